"""The CNN of "Learning TensorFlow" chapter 4, with and without max-pooling.

The book's point: pooling shrinks the dense layer's input from H x W x 64 to H/4 x W/4 x 64, so
its weights by 16x. Both variants are built here so the harness can measure what that costs or
buys in accuracy and speed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

from harness.api import ModelSpec, hookimpl

CONV_KERNEL = 5
CONV1_MAPS = 32
CONV2_MAPS = 64
DENSE_UNITS = 1024
DROPOUT_RATE = 0.5
"""The book's keep probability of 0.5; training may override it from the recipe."""


class BookCnn(ModelSpec):
    """Conv 5x5/32 -> [pool] -> Conv 5x5/64 -> [pool] -> Dense 1024 -> Dropout -> logits."""

    name: ClassVar[str] = "book_cnn"
    description: ClassVar[str] = (
        "Learning TensorFlow ch. 4 CNN: two 5x5 conv layers (32, 64 maps), "
        "optional 2x2 max-pooling, dense 1024, dropout 0.5"
    )
    variants: ClassVar[tuple[str, ...]] = ("pool", "nopool")

    def build(self, variant: str, input_shape: tuple[int, int, int], num_classes: int) -> Any:
        if variant not in self.variants:
            raise ValueError(
                f"book_cnn has no variant {variant!r}; expected one of {', '.join(self.variants)}"
            )
        import keras

        pooled = variant == "pool"
        layers = keras.layers
        images = keras.Input(shape=input_shape, dtype="uint8", name="images")
        x = layers.Rescaling(1.0 / 255.0, name="scale")(images)
        x = layers.Conv2D(CONV1_MAPS, CONV_KERNEL, padding="same", activation="relu", name="conv1")(
            x
        )
        if pooled:
            x = layers.MaxPooling2D(2, name="pool1")(x)
        x = layers.Conv2D(CONV2_MAPS, CONV_KERNEL, padding="same", activation="relu", name="conv2")(
            x
        )
        if pooled:
            x = layers.MaxPooling2D(2, name="pool2")(x)
        x = layers.Flatten(name="flatten")(x)
        x = layers.Dense(DENSE_UNITS, activation="relu", name="dense1")(x)
        x = layers.Dropout(DROPOUT_RATE, name="dropout")(x)
        logits = layers.Dense(num_classes, name="logits")(x)
        return keras.Model(images, logits, name=f"book_cnn_{variant}")


@hookimpl
def register_models(register: Callable[[ModelSpec], None]) -> None:
    register(BookCnn())
