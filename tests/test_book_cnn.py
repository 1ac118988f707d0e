"""The book's CNN: exact parameter counts, uint8 input, stable layer names, plugin registration."""

import keras
import numpy as np
import pytest

from harness_book_cnn import BookCnn, register_models

MNIST = ((28, 28, 1), 10)
CIFAR10 = ((32, 32, 3), 10)


@pytest.mark.parametrize(
    ("shape", "variant", "expected"),
    [
        (MNIST, "pool", 3_274_634),
        (MNIST, "nopool", 51_443_594),
        (CIFAR10, "pool", 4_259_274),
        (CIFAR10, "nopool", 67_173_834),
    ],
    ids=["mnist-pool", "mnist-nopool", "cifar10-pool", "cifar10-nopool"],
)
def test_parameter_counts_match_the_book(shape, variant, expected):
    input_shape, num_classes = shape
    model = BookCnn().build(variant, input_shape, num_classes)
    assert model.count_params() == expected


def test_layer_names_are_stable_and_pool_layers_only_in_pool_variant():
    pool = BookCnn().build("pool", (28, 28, 1), 10)
    nopool = BookCnn().build("nopool", (28, 28, 1), 10)
    names = ["scale", "conv1", "pool1", "conv2", "pool2", "flatten", "dense1", "dropout", "logits"]
    assert [layer.name for layer in pool.layers[1:]] == names
    assert [layer.name for layer in nopool.layers[1:]] == [
        n for n in names if not n.startswith("pool")
    ]


def test_model_takes_uint8_and_scales_inside_to_unit_range():
    model = BookCnn().build("pool", (8, 8, 3), 4)
    assert model.inputs[0].dtype == "uint8"
    scale = model.get_layer("scale")
    images = np.array([[[[0, 128, 255]]]], dtype=np.uint8)
    scaled = keras.ops.convert_to_numpy(scale(images))
    np.testing.assert_allclose(scaled, [[[[0.0, 128 / 255, 1.0]]]], rtol=1e-6)
    assert model(np.zeros((2, 8, 8, 3), np.uint8)).shape == (2, 4)


def test_unknown_variant_names_the_known_ones():
    with pytest.raises(ValueError, match="pool, nopool"):
        BookCnn().build("wide", (28, 28, 1), 10)


def test_plugin_registers_book_cnn_with_both_variants():
    registered = []
    register_models(registered.append)
    assert [spec.name for spec in registered] == ["book_cnn"]
    assert registered[0].variants == ("pool", "nopool")
