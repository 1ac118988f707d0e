"""ONNX Runtime backend plugin: the trained Keras model exported with tf2onnx, run by a session."""

from harness import hookimpl
from harness_onnxruntime.backend import OnnxRuntimeBackend


@hookimpl
def register_backends(register) -> None:
    register(OnnxRuntimeBackend())
