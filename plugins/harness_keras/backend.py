"""Keras inference on TensorFlow's fastest faithful path: a compiled ``tf.function``.

``model.predict`` re-enters Keras's data pipeline on every call (about 100 ms per MNIST image
here) and an eager call pays Python dispatch per layer (about 12 ms); a ``tf.function`` with a
batch-polymorphic input signature is traced once and runs as one graph. ``jit_compile`` (XLA)
is a separate, labelled configuration: ``backend_options.keras.jit_compile = true``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from harness.api import Backend, DeviceUnavailable, Option, Predictor, TrainedModel

NVIDIA_DEVICE = Path("/dev/nvidia0")


class KerasPredictor(Predictor):
    def __init__(self, function: Any, details: dict[str, Any]) -> None:
        self._function = function
        self._details = details

    def predict(self, batch: np.ndarray) -> np.ndarray:
        # .numpy() copies the result to the host, which waits for the device to finish.
        return self._function(batch).numpy()

    def describe(self) -> dict[str, Any]:
        return dict(self._details)


class KerasBackend(Backend):
    name = "keras"
    description = "TensorFlow/Keras through a compiled tf.function (optionally XLA)"
    devices = ("cpu", "gpu")
    options = {
        "jit_compile": Option(False, "compile with XLA: a separate, labelled configuration"),
        "intra_op_threads": Option(0, "threads within one operation; 0: TensorFlow's default"),
        "inter_op_threads": Option(0, "operations run at once; 0: TensorFlow's default"),
    }

    def probe_devices(self) -> dict[str, str | None]:
        gpu = None if NVIDIA_DEVICE.exists() else f"no NVIDIA GPU found (no {NVIDIA_DEVICE})"
        return {"cpu": None, "gpu": gpu}

    def prepare(
        self, model: TrainedModel, device: str, options: Mapping[str, Any]
    ) -> KerasPredictor:
        settings = self.check_options(options)
        import tensorflow as tf

        configure_threads(tf, settings)
        tf_device = select_device(tf, device)
        import keras

        with tf.device(tf_device):
            keras_model = keras.models.load_model(model.keras_path, compile=False)
            signature = [tf.TensorSpec([None, *keras_model.inputs[0].shape[1:]], tf.uint8)]

            def infer(images: Any) -> Any:
                with tf.device(tf_device):
                    return keras_model(images, training=False)

            function = tf.function(
                infer, input_signature=signature, jit_compile=settings["jit_compile"]
            )
        intra = tf.config.threading.get_intra_op_parallelism_threads()
        inter = tf.config.threading.get_inter_op_parallelism_threads()
        details = {
            "inference_path": "tf.function+xla" if settings["jit_compile"] else "tf.function",
            "device": tf_device,
            "threads": f"intra_op {intra or 'default'}, inter_op {inter or 'default'}",
            "intra_op_threads": intra,
            "inter_op_threads": inter,
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
        }
        if device == "gpu":
            gpu = tf.config.list_physical_devices("GPU")[0]
            details["gpu"] = tf.config.experimental.get_device_details(gpu).get("device_name")
        return KerasPredictor(function, details)


def configure_threads(tf: Any, settings: Mapping[str, Any]) -> None:
    """Apply thread counts; must run before TensorFlow executes its first operation."""
    if settings["intra_op_threads"]:
        tf.config.threading.set_intra_op_parallelism_threads(settings["intra_op_threads"])
    if settings["inter_op_threads"]:
        tf.config.threading.set_inter_op_parallelism_threads(settings["inter_op_threads"])


def select_device(tf: Any, device: str) -> str:
    """The TensorFlow device name for ``device``; GPU memory grows on demand, never all at once."""
    gpus = tf.config.list_physical_devices("GPU")
    for gpu in gpus:
        # RuntimeError: the GPU was initialised already and growth cannot change now.
        with contextlib.suppress(RuntimeError):
            tf.config.experimental.set_memory_growth(gpu, True)
    if device == "cpu":
        return "/CPU:0"
    if device == "gpu":
        if not gpus:
            raise DeviceUnavailable(
                f"TensorFlow {tf.__version__} sees no GPU (tf.config.list_physical_devices('GPU')"
                " is empty): a GPU machine needs the `gpu` extra (tensorflow[and-cuda])"
            )
        return "/GPU:0"
    raise DeviceUnavailable(f"the keras backend has no device {device!r}; it knows cpu and gpu")
