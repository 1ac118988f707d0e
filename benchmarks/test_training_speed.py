"""Training through the harness must be as fast as plain ``model.fit`` on the same data."""

import time

import keras
import numpy as np

from harness.api import LabelledImages
from harness.suite import TrainingRecipe
from harness.training import set_seeds, train
from harness_book_cnn import BookCnn

STEPS = 40
RECIPE = TrainingRecipe()
ROUNDS = 3
MIN_RATIO = 0.95


def _fresh_model():
    set_seeds(0)
    return BookCnn().build("pool", (28, 28, 1), 10)


def test_harness_training_matches_plain_fit(benchmark):
    rng = np.random.default_rng(0)
    images_count = STEPS * RECIPE.batch_size
    data = LabelledImages(
        rng.integers(0, 256, (images_count, 28, 28, 1), dtype=np.uint8),
        rng.integers(0, 10, images_count),
    )
    plain_seconds: list[float] = []

    def plain_fit() -> None:
        # Runs as the untimed setup of each round, so the two are interleaved and share the
        # machine's conditions; both timings include compiling and tracing.
        model = _fresh_model()
        start = time.perf_counter()
        model.compile(
            optimizer=keras.optimizers.Adam(RECIPE.learning_rate),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=["accuracy"],
        )
        model.fit(data.images, data.labels, batch_size=RECIPE.batch_size, epochs=1, verbose=0)
        plain_seconds.append(time.perf_counter() - start)

    def harness_train(model) -> None:
        train(model, data, RECIPE, STEPS, seed=0, progress=False)

    def setup():
        plain_fit()
        return (_fresh_model(),), {}

    benchmark.pedantic(harness_train, setup=setup, rounds=ROUNDS, iterations=1)

    harness_rate = images_count / benchmark.stats.stats.min
    plain_rate = images_count / min(plain_seconds)
    ratio = harness_rate / plain_rate
    benchmark.extra_info.update(
        harness_images_per_second=round(harness_rate, 1),
        plain_fit_images_per_second=round(plain_rate, 1),
        ratio=round(ratio, 3),
    )
    assert ratio >= MIN_RATIO, (
        f"harness trains at {harness_rate:.0f} images/s, plain fit at {plain_rate:.0f}: "
        f"ratio {ratio:.3f} < {MIN_RATIO}"
    )
