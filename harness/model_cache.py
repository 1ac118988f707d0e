"""The trained-model cache: train each (dataset, model, variant) once, reuse it across runs.

Each entry is a folder named after a hash of everything that decides the trained weights. It
holds ``model.keras`` and a JSON sidecar written last, so a folder without a valid sidecar is
simply a miss. Backends keep their conversions of the model (e.g. ``model.onnx``) in the same
folder, and a retrain clears them.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from harness.api import Dataset, LabelledImages, ModelSpec, TrainedModel
from harness.errors import HarnessError
from harness.suite import TrainingRecipe
from harness.training import predict_logits, set_seeds
from harness.training import train as train_model

CACHE_FORMAT = 2
"""Bump when the layout, the sidecar or the training procedure changes (2: epochs of at least
40 steps), so old entries become misses."""
MODEL_FILE = "model.keras"
SIDECAR_FILE = "model.json"


@dataclass(frozen=True)
class CachedModel:
    """A trained model and its sidecar; ``hit`` says whether it came from the cache."""

    trained: TrainedModel
    record: dict[str, Any]
    hit: bool
    model: Any = None
    """On a miss, the model as stored, still in memory (the runner need not load it back);
    None on a hit."""
    test_logits: np.ndarray | None = None
    """On a miss, its float32 logits on the whole test set (the sidecar's accuracy comes from
    them); None on a hit."""


_held: dict[Path, Any] = {}
"""Models this process holds in memory, by the path of their ``.keras`` file."""


@contextmanager
def holding(path: Path, model: Any) -> Iterator[None]:
    """While the runner holds ``model`` (the one stored at ``path``), ``load_model(path)``
    returns it instead of reading the file: a backend's ``convert`` in the runner then costs
    no second load (2-3 s for a nopool model)."""
    _held[Path(path)] = model
    try:
        yield
    finally:
        _held.pop(Path(path), None)


def load_model(path: Path) -> Any:
    """Load a cached ``.keras`` file for inference (uncompiled), or return the model the
    runner holds for it (see :func:`holding`); callers must not change it."""
    held = _held.get(Path(path))
    if held is not None:
        return held
    import keras

    try:
        return keras.saving.load_model(path, compile=False)
    except Exception as exc:  # Keras raises zipfile, OS, value and HDF5 errors alike
        raise HarnessError(
            f"{path}: cannot load the Keras model ({exc}); delete {path.parent} to retrain it"
        ) from exc


class TrainedModelCache:
    """Trained models under ``root``, one folder per cache key."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def get_or_train(
        self,
        spec: ModelSpec,
        variant: str,
        dataset: Dataset,
        train: LabelledImages,
        test: LabelledImages,
        recipe: TrainingRecipe,
        steps: int,
        seed: int,
        progress: bool = True,
        log: Callable[[str], None] = lambda line: None,
    ) -> CachedModel:
        """Return the cached model for these inputs, training and storing it on a miss.

        A damaged or mismatched entry is retrained with a warning naming the file. A Ctrl-C
        during training propagates and leaves the cache as it was. ``log`` hears when training
        starts: without a progress bar, the longest silence of a run.
        """
        inputs = key_inputs(spec, variant, dataset, train, recipe, steps, seed)
        key = cache_key(inputs)
        folder = self.root / key
        record = _read_valid_sidecar(folder, inputs)
        hit = record is not None
        model = logits = None
        if record is None:
            log(f"training {steps} steps (not in the cache)")
            set_seeds(seed)
            model = spec.build(variant, dataset.input_shape, dataset.num_classes)
            training = train_model(model, train, recipe, steps, seed, progress=progress)
            logits = predict_logits(model, test.images)
            correct = np.argmax(logits, axis=1) == test.labels
            record = {
                "key": key,
                "key_inputs": inputs,
                "training": training.to_dict(),
                "test_accuracy": float(np.mean(correct)) if len(test) else None,
                "test_images": len(test),
                "created": datetime.now(UTC).isoformat(timespec="seconds"),
            }
            model = _store(folder, model, record)
        trained = TrainedModel(
            dataset=dataset.name,
            model=spec.name,
            variant=variant,
            keras_path=folder / MODEL_FILE,
            artifact_dir=folder,
            cache_key=key,
        )
        return CachedModel(trained, record, hit, model, logits)


def key_inputs(
    spec: ModelSpec,
    variant: str,
    dataset: Dataset,
    train: LabelledImages,
    recipe: TrainingRecipe,
    steps: int,
    seed: int,
) -> dict[str, Any]:
    """Everything that decides the trained weights, JSON-ready.

    The recipe's step table is left out (only this model's ``steps`` count), so changing another
    model's budget does not invalidate this one. The training data enters by content digest: a
    different data folder with the same shapes is a different model.
    """
    import keras
    import tensorflow as tf

    recipe_fields = {f.name: getattr(recipe, f.name) for f in fields(recipe) if f.name != "steps"}
    return {
        "format": CACHE_FORMAT,
        "model": spec.name,
        "variant": variant,
        "dataset": dataset.name,
        "input_shape": list(dataset.input_shape),
        "num_classes": dataset.num_classes,
        "recipe": recipe_fields,
        "steps": steps,
        "seed": seed,
        "train_images": len(train),
        "train_digest": _digest_arrays(train.images, train.labels),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
    }


def cache_key(inputs: dict[str, Any]) -> str:
    """A readable folder name: ``<dataset>-<model>-<variant>-<hash of all inputs>``."""
    digest = hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:16]
    return f"{inputs['dataset']}-{inputs['model']}-{inputs['variant']}-{digest}"


def _read_valid_sidecar(folder: Path, inputs: dict[str, Any]) -> dict[str, Any] | None:
    """The sidecar if the entry is complete and matches ``inputs``; else None, warning why."""
    sidecar_path = folder / SIDECAR_FILE
    model_path = folder / MODEL_FILE
    if not sidecar_path.exists():
        return None
    try:
        sidecar = json.loads(sidecar_path.read_text())
        expected_digest = sidecar["keras_sha256"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        _warn_retrain(sidecar_path, f"unreadable sidecar ({exc})")
        return None
    if sidecar.get("key_inputs") != inputs:
        _warn_retrain(sidecar_path, "its key inputs do not match this run's")
        return None
    if not model_path.exists():
        _warn_retrain(model_path, "the file is missing")
        return None
    if _file_sha256(model_path) != expected_digest:
        _warn_retrain(model_path, "the file is corrupt or truncated (sha256 differs from sidecar)")
        return None
    return sidecar


def _warn_retrain(path: Path, reason: str) -> None:
    warnings.warn(f"trained-model cache: {path}: {reason}; retraining", stacklevel=4)


def _store(folder: Path, model: Any, record: dict[str, Any]) -> Any:
    """Replace the entry in ``folder``; the sidecar goes last and makes it valid. Returns the
    model as stored (uncompiled, without the optimizer's state)."""
    if folder.exists():
        shutil.rmtree(folder)  # a damaged entry, and conversions of an older model
    folder.mkdir(parents=True)
    model_path = folder / MODEL_FILE
    inference_model = _without_training_state(model)
    _atomic_write(model_path, lambda tmp: inference_model.save(tmp))
    record["keras_sha256"] = _file_sha256(model_path)
    text = json.dumps(record, indent=2, sort_keys=True)
    _atomic_write(folder / SIDECAR_FILE, lambda tmp: tmp.write_text(text))
    return inference_model


def _without_training_state(model: Any) -> Any:
    """An uncompiled copy with the same weights: the cache holds what inference needs.

    A compiled model's ``.keras`` file also carries Adam's two moment slots per weight, three
    times the model's size (over 800 MB for CIFAR-10 nopool), which every backend would load.
    """
    copy = type(model).from_config(model.get_config())  # clone_model would keep compile()
    copy.set_weights(model.get_weights())
    return copy


def _atomic_write(path: Path, write: Callable[[Path], object]) -> None:
    """Write through a temporary file in the same folder, then rename it into place."""
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}-", suffix=path.suffix)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _digest_arrays(*arrays: np.ndarray) -> str:
    digest = hashlib.blake2b(digest_size=16)
    for array in arrays:
        digest.update(str((array.dtype.str, array.shape)).encode())
        digest.update(np.ascontiguousarray(array).data)
    return digest.hexdigest()
