"""ONNX Runtime backend plugin: the trained Keras model exported with tf2onnx, run by a session
(``onnxruntime``), and the export quantized to int8 (``onnxruntime_int8``)."""

from harness.api import hookimpl
from harness_onnxruntime.backend import OnnxRuntimeBackend
from harness_onnxruntime.int8 import OnnxRuntimeInt8Backend


@hookimpl
def register_backends(register) -> None:
    register(OnnxRuntimeBackend())
    register(OnnxRuntimeInt8Backend())
