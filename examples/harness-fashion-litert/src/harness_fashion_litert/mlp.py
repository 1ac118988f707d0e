"""A multilayer perceptron: the baseline without convolutions.

Beside the book's CNNs it shows what convolutions buy: on 28x28x1 input it has 203,530
parameters (784x256 + 256 + 256x10 + 10), about a sixteenth of the pooled CNN's, and no spatial
structure to exploit.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

from harness.api import ModelSpec, hookimpl

HIDDEN_UNITS = 256
DROPOUT_RATE = 0.5
"""As the book's CNN; the suite's training recipe overrides it for every Dropout layer."""


class Mlp(ModelSpec):
    """Rescaling -> Flatten -> Dense 256 ReLU -> Dropout -> Dense (logits)."""

    name: ClassVar[str] = "mlp"
    description: ClassVar[str] = "multilayer perceptron: dense 256 ReLU, dropout, no convolutions"
    variants: ClassVar[tuple[str, ...]] = ("dense256",)

    def build(self, variant: str, input_shape: tuple[int, int, int], num_classes: int) -> Any:
        if variant not in self.variants:
            raise ValueError(
                f"mlp has no variant {variant!r}; expected one of {', '.join(self.variants)}"
            )
        import keras

        layers = keras.layers
        images = keras.Input(shape=input_shape, dtype="uint8", name="images")
        x = layers.Rescaling(1.0 / 255.0, name="scale")(images)
        x = layers.Flatten(name="flatten")(x)
        x = layers.Dense(HIDDEN_UNITS, activation="relu", name="hidden")(x)
        x = layers.Dropout(DROPOUT_RATE, name="dropout")(x)
        logits = layers.Dense(num_classes, name="logits")(x)
        return keras.Model(images, logits, name=f"mlp_{variant}")


@hookimpl
def register_models(register: Callable[[ModelSpec], None]) -> None:
    register(Mlp())
