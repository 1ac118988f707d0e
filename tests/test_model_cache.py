"""The trained-model cache: recorded hits, retraining damaged entries, atomic and intact writes."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from harness import model_cache
from harness.api import Dataset, LabelledImages
from harness.model_cache import (
    MODEL_FILE,
    SIDECAR_FILE,
    TrainedModelCache,
    holding,
    load_model,
)
from harness.suite import TrainingRecipe
from harness.training import predict_logits
from harness_book_cnn import BookCnn

pytestmark = pytest.mark.slow

RECIPE = TrainingRecipe(batch_size=8)
STEPS = 3


class TinyDataset(Dataset):
    """Random 8x8 grey images in three classes, generated in memory."""

    name = "tiny"
    input_shape = (8, 8, 1)
    class_names = ("a", "b", "c")
    split_sizes = {"train": 48, "test": 16}

    def load(self, data_dir: Path, split: str) -> LabelledImages:
        rng = np.random.default_rng(0 if split == "train" else 1)
        n = self.split_sizes[split]
        return LabelledImages(
            rng.integers(0, 256, (n, *self.input_shape), dtype=np.uint8),
            rng.integers(0, len(self.class_names), n),
        )


DATASET = TinyDataset()
TRAIN = DATASET.load(Path(), "train")
TEST = DATASET.load(Path(), "test")


def _get(cache, seed=0, train=TRAIN):
    return cache.get_or_train(
        BookCnn(), "pool", DATASET, train, TEST, RECIPE, STEPS, seed, progress=False
    )


@pytest.fixture(scope="module")
def trained_root(tmp_path_factory):
    """One trained entry, copied by each test so that only tests that must retrain do."""
    root = tmp_path_factory.mktemp("cache-template")
    first = _get(TrainedModelCache(root))
    assert not first.hit
    return root


@pytest.fixture
def cache_root(trained_root, tmp_path):
    root = tmp_path / "models"
    shutil.copytree(trained_root, root)
    return root


def _entry(root: Path) -> Path:
    (folder,) = root.iterdir()
    return folder


def test_a_miss_hands_back_the_trained_model_and_its_test_logits(tmp_path):
    cached = _get(TrainedModelCache(tmp_path))
    assert not cached.hit
    reloaded = load_model(cached.trained.keras_path)
    np.testing.assert_array_equal(cached.test_logits, predict_logits(reloaded, TEST.images))
    np.testing.assert_array_equal(
        predict_logits(cached.model, TEST.images), predict_logits(reloaded, TEST.images)
    )
    accuracy = np.mean(np.argmax(cached.test_logits, axis=1) == TEST.labels)
    assert cached.record["test_accuracy"] == pytest.approx(accuracy)


def test_second_call_is_a_recorded_hit(cache_root):
    cached = _get(TrainedModelCache(cache_root))
    assert cached.hit
    assert cached.model is None and cached.test_logits is None
    trained = cached.trained
    assert trained.artifact_dir == _entry(cache_root)
    assert trained.keras_path == trained.artifact_dir / MODEL_FILE
    assert trained.cache_key == trained.artifact_dir.name
    assert trained.cache_key.startswith("tiny-book_cnn-pool-")
    assert (trained.dataset, trained.model, trained.variant) == ("tiny", "book_cnn", "pool")
    sidecar = json.loads((trained.artifact_dir / SIDECAR_FILE).read_text())
    assert cached.record == sidecar
    assert sidecar["training"]["steps"] == STEPS
    assert sidecar["key_inputs"]["seed"] == 0
    assert {"tensorflow", "keras"} <= sidecar["key_inputs"].keys()
    model = load_model(trained.keras_path)
    accuracy = np.mean(np.argmax(predict_logits(model, TEST.images), axis=1) == TEST.labels)
    assert sidecar["test_accuracy"] == pytest.approx(accuracy)


def test_a_different_seed_or_training_set_is_a_miss(cache_root):
    cache = TrainedModelCache(cache_root)
    other_seed = _get(cache, seed=1)
    smaller = _get(cache, train=LabelledImages(TRAIN.images[:40], TRAIN.labels[:40]))
    assert not other_seed.hit
    assert not smaller.hit
    assert len({p.name for p in cache_root.iterdir()}) == 3


def test_truncated_keras_file_is_retrained_with_a_warning(cache_root):
    model_path = _entry(cache_root) / MODEL_FILE
    model_path.write_bytes(model_path.read_bytes()[:1000])
    with pytest.warns(UserWarning, match=r"model\.keras.*corrupt or truncated"):
        cached = _get(TrainedModelCache(cache_root))
    assert not cached.hit
    load_model(cached.trained.keras_path)
    assert _get(TrainedModelCache(cache_root)).hit


def test_mismatched_sidecar_is_retrained_with_a_warning(cache_root):
    sidecar_path = _entry(cache_root) / SIDECAR_FILE
    sidecar = json.loads(sidecar_path.read_text())
    sidecar["key_inputs"]["steps"] = 999
    sidecar_path.write_text(json.dumps(sidecar))
    with pytest.warns(UserWarning, match=r"model\.json.*do not match"):
        cached = _get(TrainedModelCache(cache_root))
    assert not cached.hit
    assert cached.record["key_inputs"]["steps"] == STEPS


def test_unreadable_sidecar_is_retrained_with_a_warning(cache_root):
    (_entry(cache_root) / SIDECAR_FILE).write_text('{"key": ')
    with pytest.warns(UserWarning, match=r"model\.json.*unreadable"):
        assert not _get(TrainedModelCache(cache_root)).hit


def test_folder_without_sidecar_is_a_miss_and_retrain_clears_old_conversions(cache_root):
    folder = _entry(cache_root)
    (folder / SIDECAR_FILE).unlink()  # as if a crash came between the two writes
    (folder / "model.onnx").write_bytes(b"conversion of the old model")
    cached = _get(TrainedModelCache(cache_root))
    assert not cached.hit
    assert sorted(p.name for p in folder.iterdir()) == sorted([MODEL_FILE, SIDECAR_FILE])


def test_ctrl_c_during_training_leaves_the_cache_as_it_was(cache_root, monkeypatch):
    before = {p: p.read_bytes() for p in _entry(cache_root).iterdir()}

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(model_cache, "train_model", interrupted)
    with pytest.raises(KeyboardInterrupt):
        _get(TrainedModelCache(cache_root), seed=5)
    assert {p: p.read_bytes() for p in _entry(cache_root).iterdir()} == before


def test_load_model_names_the_file_it_cannot_read(tmp_path):
    from harness.errors import HarnessError

    broken = tmp_path / "model.keras"
    broken.write_bytes(b"not a zip")
    with pytest.raises(HarnessError, match=r"model\.keras: cannot load"):
        load_model(broken)


def test_cached_file_holds_the_weights_without_optimizer_state(cache_root):
    import keras

    trained = _get(TrainedModelCache(cache_root)).trained
    restored = keras.saving.load_model(trained.keras_path)  # compiled state, if any, restored
    assert getattr(restored, "optimizer", None) is None
    weight_bytes = sum(w.nbytes for w in restored.get_weights())
    assert trained.keras_path.stat().st_size < 1.5 * weight_bytes


def test_while_the_runner_holds_a_model_loading_its_path_returns_it(cache_root):
    path = _entry(cache_root) / MODEL_FILE
    held = object()
    with holding(path, held):
        assert load_model(path) is held
        assert load_model(Path(str(path))) is held
    assert load_model(path) is not held
