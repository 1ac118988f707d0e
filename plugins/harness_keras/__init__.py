"""Keras backend plugin: the trained ``.keras`` model through a compiled ``tf.function``."""

from harness.api import hookimpl
from harness_keras.backend import KerasBackend


@hookimpl
def register_backends(register) -> None:
    register(KerasBackend())
