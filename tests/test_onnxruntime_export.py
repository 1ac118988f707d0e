"""The ONNX export: weights traced as inputs, then stored as initializers of a one-input model,
each in the layout its node reads, so that ONNX Runtime's quantization tools take it as is."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import onnx
import onnxruntime
import pytest

from harness.api import TrainedModel
from harness_onnxruntime.export import _weight_input_names, export_onnx

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A uint8-in model with a conv, a dropout (an unused seed) and a batch norm whose moving
    statistics are far from their initial values, so a weight fed to the wrong slot shows."""
    import keras

    keras.utils.set_random_seed(0)
    images = keras.Input((8, 8, 3), dtype="uint8", name="images")
    x = keras.layers.Rescaling(1 / 255, name="scale")(images)
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv1")(x)
    x = keras.layers.BatchNormalization(name="norm")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(16, activation="relu", name="dense1")(x)
    x = keras.layers.Dropout(0.5, name="dropout")(x)
    model = keras.Model(images, keras.layers.Dense(10, name="logits")(x))
    rng = np.random.default_rng(0)
    norm = model.get_layer("norm")
    norm.moving_mean.assign(rng.normal(0.5, 0.2, 4).astype(np.float32))
    norm.moving_variance.assign(rng.uniform(0.1, 2.0, 4).astype(np.float32))
    root = tmp_path_factory.mktemp("export")
    model.save(root / "model.keras")
    batch = rng.integers(0, 256, size=(64, 8, 8, 3), dtype=np.uint8)
    np.save(root / "images.npy", batch)
    np.save(root / "logits.npy", model(batch, training=False).numpy())
    return root, root / "model.keras"


def exported(saved_model: tuple[Path, Path]) -> onnx.ModelProto:
    root, keras_path = saved_model
    trained = TrainedModel("tiny", "tiny_cnn", "pool", keras_path, root / "art", "k1")
    return onnx.load(str(export_onnx(trained).path))


def test_the_export_has_one_uint8_images_input_and_its_weights_inside(saved_model) -> None:
    graph = exported(saved_model).graph
    [images] = graph.input
    assert images.name == "images"
    assert images.type.tensor_type.elem_type == onnx.TensorProto.UINT8
    assert images.type.tensor_type.shape.dim[0].dim_param  # a symbolic batch dimension
    stored = {tensor.name for tensor in graph.initializer}
    weights = {"conv1.kernel", "conv1.bias", "dense1.kernel", "logits.kernel", "logits.bias"}
    assert weights <= stored
    # The batch norm's four tensors are folded into its scale and offset, under new names.
    assert not [name for name in stored if name.startswith("norm.")]
    assert not [name for name in stored if "seed" in name]  # unused at inference: dropped
    assert all(t.data_location == onnx.TensorProto.DEFAULT for t in graph.initializer)


def test_the_export_computes_the_keras_logits(saved_model) -> None:
    root = saved_model[0]
    session = onnxruntime.InferenceSession(
        exported(saved_model).SerializeToString(), providers=["CPUExecutionProvider"]
    )
    logits = session.run(None, {"images": np.load(root / "images.npy")})[0]
    assert np.abs(logits - np.load(root / "logits.npy")).max() <= 1e-4


def initializer_only_nodes(graph: onnx.GraphProto) -> list[str]:
    """Nodes whose every input is an initializer: weight work left for the runtime to fold."""
    stored = {tensor.name for tensor in graph.initializer}
    return [
        f"{node.op_type} {node.name}"
        for node in graph.node
        if all(name in stored for name in node.input if name)
    ]


def test_no_node_of_the_export_reads_only_weights(saved_model) -> None:
    graph = exported(saved_model).graph
    assert initializer_only_nodes(graph) == []
    stored = {tensor.name: tensor for tensor in graph.initializer}
    [conv] = [node for node in graph.node if node.op_type == "Conv"]
    assert conv.input[1] == "conv1.kernel"  # folded in place, under its Keras name
    assert list(stored["conv1.kernel"].dims) == [4, 3, 3, 3]  # OIHW, as Conv reads it


@pytest.fixture(scope="module")
def book_cnn_export(book_cnn_mnist, tmp_path_factory: pytest.TempPathFactory) -> Path:
    trained = dataclasses.replace(
        book_cnn_mnist.trained, artifact_dir=tmp_path_factory.mktemp("book_cnn_export")
    )
    return export_onnx(trained).path


def session_logits(model: Path | bytes, images: np.ndarray) -> np.ndarray:
    source = model if isinstance(model, bytes) else str(model)
    session = onnxruntime.InferenceSession(source, providers=["CPUExecutionProvider"])
    return session.run(None, {"images": images})[0]


def test_the_book_cnns_export_keeps_no_weight_behind_a_layout_change(book_cnn_export) -> None:
    graph = onnx.load(str(book_cnn_export)).graph
    stored = {tensor.name: list(tensor.dims) for tensor in graph.initializer}
    assert not [
        node.name
        for node in graph.node
        if node.op_type == "Transpose" and any(name in stored for name in node.input)
    ]
    assert initializer_only_nodes(graph) == []
    convs = [node for node in graph.node if node.op_type == "Conv"]
    assert [stored[conv.input[1]] for conv in convs] == [[32, 1, 5, 5], [64, 32, 5, 5]]
    assert all(conv.input[2] in stored for conv in convs)  # biases too


def test_the_book_cnns_export_computes_the_keras_logits(book_cnn_mnist, book_cnn_export) -> None:
    logits = session_logits(book_cnn_export, book_cnn_mnist.images)
    assert np.abs(logits - book_cnn_mnist.reference_logits).max() <= 1e-4


def test_quantize_dynamic_takes_the_book_cnns_export_as_is(
    book_cnn_mnist, book_cnn_export, tmp_path
) -> None:
    from onnxruntime.quantization import quantize_dynamic

    quantized = tmp_path / "int8.onnx"
    quantize_dynamic(book_cnn_export, quantized, op_types_to_quantize=["Conv", "MatMul"])
    ops = [node.op_type for node in onnx.load(str(quantized)).graph.node]
    assert ops.count("ConvInteger") == 2 and "Conv" not in ops
    assert ops.count("MatMulInteger") == 2 and "MatMul" not in ops
    fp32 = session_logits(book_cnn_export, book_cnn_mnist.images)
    int8 = session_logits(quantized, book_cnn_mnist.images)
    assert np.mean(int8.argmax(axis=1) == fp32.argmax(axis=1)) >= 0.9
    assert quantized.stat().st_size < book_cnn_export.stat().st_size / 3


def test_weight_input_names_are_unique_tensorflow_names_after_the_keras_paths() -> None:
    paths = [
        "conv1/kernel",
        "seed_generator/state",
        "seed_generator/state",
        "_odd name/x",
        "images",
    ]
    names = _weight_input_names([SimpleNamespace(path=path) for path in paths])
    assert names == [
        "conv1.kernel",
        "seed_generator.state",
        "seed_generator.state_",
        "w_odd_name.x",
        "images_",
    ]
