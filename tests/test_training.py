"""Training with the book's recipe on tiny random data: exact steps, seeds, progress, logits."""

import numpy as np
import pytest

from harness.api import LabelledImages
from harness.errors import HarnessError
from harness.suite import TrainingRecipe
from harness.training import predict_logits, set_seeds, train
from harness_book_cnn import BookCnn

pytestmark = pytest.mark.slow

SHAPE = (8, 8, 1)
CLASSES = 3
RECIPE = TrainingRecipe(batch_size=8)


@pytest.fixture(scope="module")
def tiny_train():
    rng = np.random.default_rng(0)
    return LabelledImages(
        rng.integers(0, 256, (64, *SHAPE), dtype=np.uint8), rng.integers(0, CLASSES, 64)
    )


def _trained(data, seed, steps=4, recipe=RECIPE):
    set_seeds(seed)
    model = BookCnn().build("pool", SHAPE, CLASSES)
    record = train(model, data, recipe, steps, seed, progress=False)
    return model, record


def test_same_seed_reproduces_the_same_weights(tiny_train):
    first, _ = _trained(tiny_train, seed=3)
    again, _ = _trained(tiny_train, seed=3)
    other, _ = _trained(tiny_train, seed=4)
    for a, b in zip(first.get_weights(), again.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first.get_weights()[0], other.get_weights()[0])


@pytest.mark.parametrize(("steps", "history_points"), [(7, 1), (60, 2), (400, 10)])
def test_runs_exactly_the_requested_steps(tiny_train, steps, history_points):
    model, record = _trained(tiny_train, seed=0, steps=steps)
    assert int(model.optimizer.iterations.numpy()) == steps
    assert record.steps == steps
    assert record.steps_per_epoch * history_points == steps
    assert len(record.history["loss"]) == len(record.history["accuracy"]) == history_points
    assert record.images_per_second > 0
    assert record.seconds > 0


def test_recipe_sets_learning_rate_dropout_and_subset(tiny_train):
    recipe = TrainingRecipe(learning_rate=3e-3, batch_size=8, dropout=0.25, train_subset=16)
    model, record = _trained(tiny_train, seed=0, steps=2, recipe=recipe)
    assert record.train_images == 16
    assert record.batch_size == 8
    assert model.get_layer("dropout").rate == 0.25
    assert float(model.optimizer.learning_rate.numpy()) == pytest.approx(3e-3)


def test_progress_is_one_bar_on_stderr_without_keras_step_log(tiny_train, capsys):
    set_seeds(0)
    model = BookCnn().build("pool", SHAPE, CLASSES)
    train(model, tiny_train, RECIPE, 3, 0, progress=True)
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "img/s" in captured.err
    assert "step" not in captured.err  # Keras's own per-step log says "step"


def test_ctrl_c_propagates_and_closes_the_progress_bar(tiny_train, monkeypatch):
    from tqdm import tqdm

    set_seeds(0)
    model = BookCnn().build("pool", SHAPE, CLASSES)

    def interrupted_fit(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(model, "fit", interrupted_fit)
    with pytest.raises(KeyboardInterrupt):
        train(model, tiny_train, RECIPE, 3, 0, progress=True)
    assert len(tqdm._instances) == 0


def test_rejects_float_images_naming_what_was_expected(tiny_train):
    floats = LabelledImages(tiny_train.images.astype(np.float32), tiny_train.labels)
    with pytest.raises(HarnessError, match="uint8 NHWC"):
        _trained(floats, seed=0)


def test_predict_logits_matches_the_model_across_a_partial_batch(tiny_train):
    model, _ = _trained(tiny_train, seed=0, steps=1)
    images = tiny_train.images[:12]
    logits = predict_logits(model, images, batch_size=5)
    assert logits.dtype == np.float32
    assert logits.shape == (12, CLASSES)
    np.testing.assert_allclose(logits, model(images, training=False).numpy(), rtol=1e-5, atol=1e-6)
