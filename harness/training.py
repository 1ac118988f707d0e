"""Training with the book's recipe, and the reference forward pass.

Training goes through Keras ``fit`` fed by ``tf.data`` so that its speed matches plain ``fit``
(a benchmark holds it to that), with one progress bar instead of Keras's per-step log.
"""

from __future__ import annotations

import sys
import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from harness.api import LabelledImages
from harness.errors import HarnessError
from harness.suite import TrainingRecipe

HISTORY_POINTS = 20
"""About how many (loss, accuracy) points the history keeps: one per Keras epoch."""
MIN_STEPS_PER_EPOCH = 40
"""Each Keras epoch boundary costs about 50 ms here (callbacks, metric resets): at 40 steps of
batch 50 that stays near 1% of training time, where 2-step epochs cost 10%."""


@dataclass(frozen=True)
class TrainingRecord:
    """What one training run did and how fast, kept in the trained-model cache's sidecar."""

    steps: int
    batch_size: int
    train_images: int
    """Images the run drew its batches from (after ``train_subset``)."""
    seed: int
    seconds: float
    """Wall time of the whole ``fit``, graph tracing included."""
    images_per_second: float
    """Steady-state rate: images after the first step over the time after it (0.0 for 1 step)."""
    steps_per_epoch: int
    """Steps between two history points."""
    history: dict[str, list[float]]
    """Mean loss and accuracy over each run of ``steps_per_epoch`` steps."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def set_seeds(seed: int) -> None:
    """Seed Python, NumPy and TensorFlow, so that the same seed builds and trains the same weights.

    Op determinism is not switched on: on CPU the same seed already reproduces the same weights
    across processes (a test holds it to that), and TensorFlow offers no way to switch it off
    again. On a GPU, cuDNN may still pick non-deterministic kernels.
    """
    import keras

    keras.utils.set_random_seed(seed)


def train(
    model: Any,
    train: LabelledImages,
    recipe: TrainingRecipe,
    steps: int,
    seed: int,
    progress: bool = True,
) -> TrainingRecord:
    """Train ``model`` in place for exactly ``steps`` optimizer steps of ``recipe.batch_size``.

    Adam at ``recipe.learning_rate``, sparse cross-entropy on logits, ``recipe.dropout`` applied
    to every Dropout layer. Ctrl-C stops training, closes the progress bar and propagates.
    """
    import keras

    if steps < 1:
        raise HarnessError(f"training needs at least 1 step, got steps={steps}")
    images, labels = _training_arrays(train, recipe.train_subset)
    set_seeds(seed)
    _apply_dropout(model, recipe.dropout)
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=recipe.learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    steps_per_epoch = _steps_per_epoch(steps)
    dataset = _batches(images, labels, recipe.batch_size, seed)
    monitor = _make_monitor(steps * recipe.batch_size, recipe.batch_size, progress)
    start = time.perf_counter()
    try:
        history = model.fit(
            dataset,
            epochs=steps // steps_per_epoch,
            steps_per_epoch=steps_per_epoch,
            callbacks=[monitor],
            shuffle=False,  # tf.data already shuffles, with the seed
            verbose=0,
        )
    finally:
        monitor.close()
    seconds = time.perf_counter() - start
    return TrainingRecord(
        steps=steps,
        batch_size=recipe.batch_size,
        train_images=len(labels),
        seed=seed,
        seconds=seconds,
        images_per_second=monitor.steady_images_per_second(),
        steps_per_epoch=steps_per_epoch,
        history={name: [float(v) for v in history.history[name]] for name in ("loss", "accuracy")},
    )


def predict_logits(model: Any, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Float32 logits of ``images`` in inference mode.

    Direct calls on large batches, not ``model.predict`` (slow) nor a new ``tf.function`` per
    model (TensorFlow warns about retracing once a run has traced a few): at 256 images a call,
    the per-call overhead of eager execution is negligible.
    """
    chunks = [
        np.asarray(model(images[start : start + batch_size], training=False))
        for start in range(0, len(images), batch_size)
    ]
    if not chunks:
        return np.zeros((0, model.output.shape[-1]), dtype=np.float32)
    return np.concatenate(chunks).astype(np.float32, copy=False)


def _training_arrays(train: LabelledImages, subset: int) -> tuple[np.ndarray, np.ndarray]:
    images, labels = train.images, train.labels
    if subset:
        images, labels = images[:subset], labels[:subset]
    if images.dtype != np.uint8 or images.ndim != 4:
        raise HarnessError(
            f"training images must be uint8 NHWC, got {images.dtype} of shape {images.shape}"
        )
    if len(labels) == 0:
        raise HarnessError("the training set is empty; nothing to train on")
    return images, labels


def _apply_dropout(model: Any, rate: float) -> None:
    """The recipe owns the dropout rate; models are built with the book's 0.5."""
    import keras

    for layer in model.layers:
        if isinstance(layer, keras.layers.Dropout):
            layer.rate = rate


def _steps_per_epoch(steps: int) -> int:
    """The divisor of ``steps`` nearest ``steps / HISTORY_POINTS`` (but not below
    ``MIN_STEPS_PER_EPOCH``), so that epochs x it == steps."""
    target = max(MIN_STEPS_PER_EPOCH, steps / HISTORY_POINTS)
    divisors = [d for d in range(1, steps + 1) if steps % d == 0]
    return min(divisors, key=lambda d: abs(np.log(d / target)))


def _batches(images: np.ndarray, labels: np.ndarray, batch_size: int, seed: int) -> Any:
    """Seeded shuffle over the whole set, repeated; the model itself casts and scales."""
    import tensorflow as tf

    return (
        tf.data.Dataset.from_tensor_slices((images, labels))
        .cache()
        .shuffle(len(labels), seed=seed, reshuffle_each_iteration=True)
        .repeat()
        .batch(batch_size, drop_remainder=True)
        .prefetch(tf.data.AUTOTUNE)
    )


def _make_monitor(total_images: int, batch_size: int, progress: bool) -> Any:
    """A Keras callback that times the run and, if asked, draws one tqdm bar on stderr."""
    import keras
    from tqdm import tqdm

    class TrainingMonitor(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.bar = (
                tqdm(
                    total=total_images,
                    unit="img",
                    desc="train",
                    file=sys.stderr,
                    mininterval=0.5,
                    leave=False,
                )
                if progress
                else None
            )
            self.batches = 0
            self.first_batch_end = 0.0
            self.last_batch_end = 0.0

        def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
            now = time.perf_counter()
            self.batches += 1
            if self.batches == 1:
                self.first_batch_end = now
            self.last_batch_end = now
            if self.bar is not None:
                self.bar.update(batch_size)

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            if self.bar is not None and logs:
                self.bar.set_postfix(loss=f"{logs['loss']:.4f}", acc=f"{logs['accuracy']:.3f}")

        def steady_images_per_second(self) -> float:
            elapsed = self.last_batch_end - self.first_batch_end
            if self.batches < 2 or elapsed <= 0:
                return 0.0
            return (self.batches - 1) * batch_size / elapsed

        def close(self) -> None:
            if self.bar is not None:
                self.bar.close()

    return TrainingMonitor()
