"""Per-layer parameter and MAC counts, pinned to the book's figures."""

import json

import keras
import pytest

from harness.counting import count_model
from harness_book_cnn import BookCnn


@pytest.fixture(scope="module")
def mnist_pool():
    return count_model(BookCnn().build("pool", (28, 28, 1), 10))


@pytest.fixture(scope="module")
def mnist_nopool():
    return count_model(BookCnn().build("nopool", (28, 28, 1), 10))


def _layer(counts, name):
    return next(layer for layer in counts.layers if layer.name == name)


def test_pooling_shrinks_the_dense_layer_weights_sixteenfold(mnist_pool, mnist_nopool):
    pool_weights = _layer(mnist_pool, "dense1").params - 1024  # minus biases
    nopool_weights = _layer(mnist_nopool, "dense1").params - 1024
    assert pool_weights == 7 * 7 * 64 * 1024 == 3_211_264
    assert nopool_weights == 28 * 28 * 64 * 1024 == 51_380_224
    assert nopool_weights == 16 * pool_weights


def test_per_layer_table_of_mnist_pool(mnist_pool):
    table = [(r.name, r.type, r.output_shape, r.params, r.macs) for r in mnist_pool.layers]
    assert table == [
        ("scale", "Rescaling", (28, 28, 1), 0, 0),
        ("conv1", "Conv2D", (28, 28, 32), 5 * 5 * 1 * 32 + 32, 28 * 28 * 32 * 5 * 5 * 1),
        ("pool1", "MaxPooling2D", (14, 14, 32), 0, 0),
        ("conv2", "Conv2D", (14, 14, 64), 5 * 5 * 32 * 64 + 64, 14 * 14 * 64 * 5 * 5 * 32),
        ("pool2", "MaxPooling2D", (7, 7, 64), 0, 0),
        ("flatten", "Flatten", (3136,), 0, 0),
        ("dense1", "Dense", (1024,), 3136 * 1024 + 1024, 3136 * 1024),
        ("dropout", "Dropout", (1024,), 0, 0),
        ("logits", "Dense", (10,), 1024 * 10 + 10, 1024 * 10),
    ]


def test_totals_split_into_conv_and_dense(mnist_pool, mnist_nopool):
    for counts in (mnist_pool, mnist_nopool):
        assert counts.params_conv == 832 + 51_264
        assert counts.params_conv + counts.params_dense == counts.params_total
        assert counts.params_trainable == counts.params_total
        assert counts.weight_bytes == 4 * counts.params_total
        assert counts.macs_per_image == sum(layer.macs for layer in counts.layers)
    assert mnist_pool.macs_per_image == 627_200 + 10_035_200 + 3_211_264 + 10_240
    # Without pooling conv2 runs on 28x28 instead of 14x14: 4x its MACs.
    assert _layer(mnist_nopool, "conv2").macs == 4 * _layer(mnist_pool, "conv2").macs


def test_to_dict_is_json_ready(mnist_pool):
    data = json.loads(json.dumps(mnist_pool.to_dict()))
    assert data["params_total"] == 3_274_634
    assert data["layers"][1]["output_shape"] == [28, 28, 32]


def test_unknown_layer_types_count_params_but_no_macs():
    inputs = keras.Input((6,))
    x = keras.layers.BatchNormalization(name="norm")(inputs)
    x = keras.layers.Reshape((2, 3), name="reshape")(x)
    outputs = keras.layers.Dense(4, name="per_row")(x)
    counts = count_model(keras.Model(inputs, outputs))
    norm = _layer(counts, "norm")
    assert (norm.params, norm.macs) == (4 * 6, 0)
    assert counts.params_trainable == counts.params_total - 2 * 6  # moving mean and variance
    assert _layer(counts, "per_row").macs == 2 * 3 * 4  # Dense applied to each of 2 rows
    assert counts.params_conv == 0
