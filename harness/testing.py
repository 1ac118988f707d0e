"""The conformance kit: hold a plugin's datasets, models and backends to the contract of
:mod:`harness.api`, with messages that say what is wrong.

Plugin authors run it from pytest on their own package (see ``docs/plugins.md``)::

    import pytest
    from harness import testing

    @pytest.mark.parametrize("backend", testing.discovered_backends("my_plugin"))
    def test_backend_conforms(backend, tmp_path):
        testing.check_backend_on_reference(backend, tmp_path)

Every ``check_*`` raises :class:`ConformanceError` (an ``AssertionError``, so pytest shows it
as a failure) naming the object and the broken rule. TensorFlow is imported only inside the
checks that need it.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from harness.api import (
    SPLITS,
    Backend,
    Dataset,
    LabelledImages,
    ModelSpec,
    ParityTolerance,
    Predictor,
    TrainedModel,
)
from harness.errors import DataError

if TYPE_CHECKING:
    from harness.registry import Registry

REFERENCE_INPUT_SHAPE = (12, 10, 3)
"""Not square and three channels, so a backend that swaps height and width, or NHWC and NCHW,
fails instead of passing by symmetry."""
REFERENCE_CLASSES = 10
REFERENCE_IMAGES = 64
CHECK_BATCH = 4
"""Images per forward pass in the model check: enough to show a batch-size bug, cheap to run."""


class ConformanceError(AssertionError):
    """A plugin object breaks the contract; the message says which rule and what was found."""


def check_dataset(
    dataset: Dataset, data_dir: Path, splits: Sequence[str] = ("test",)
) -> dict[str, LabelledImages]:
    """Check the declarations and each of ``splits`` as loaded from ``data_dir``.

    Declarations: a name, a 3-tuple ``input_shape``, at least two distinct class names, split
    sizes for ``train`` and ``test`` only. Each split: uint8 C-contiguous ``(N, *input_shape)``
    images, int64 ``(N,)`` labels in ``range(num_classes)``, as many labels as images, N > 0.
    Loading from an empty folder must raise :class:`harness.errors.DataError` naming that
    folder. Returns the loaded splits, so a test can go on with them.
    """
    where = f"dataset {getattr(dataset, 'name', type(dataset).__name__)!r}"
    _check_name(dataset, where)
    shape = dataset.input_shape
    if not (
        isinstance(shape, tuple)
        and len(shape) == 3
        and all(isinstance(side, int) and side > 0 for side in shape)
    ):
        raise ConformanceError(
            f"{where}: input_shape is {shape!r}, expected a tuple of 3 positive ints "
            "(height, width, channels)"
        )
    names = dataset.class_names
    if (
        not isinstance(names, tuple)
        or len(names) < 2
        or len(set(names)) != len(names)
        or not all(isinstance(n, str) and n for n in names)
    ):
        raise ConformanceError(
            f"{where}: class_names is {names!r:.200}, expected a tuple of at least 2 distinct, "
            "non-empty strings in label order"
        )
    if not set(dataset.split_sizes) <= set(SPLITS):
        raise ConformanceError(
            f"{where}: split_sizes has keys {sorted(dataset.split_sizes)}, expected only "
            f"{', '.join(SPLITS)}"
        )
    for split in splits:
        if split not in dataset.split_sizes:
            raise ConformanceError(
                f"{where}: split {split!r} was asked for but split_sizes declares only "
                f"{', '.join(dataset.split_sizes) or 'none'}"
            )
    described = dataset.describe_files()
    if not isinstance(described, str) or not described:
        raise ConformanceError(
            f"{where}: describe_files() returned {described!r}, expected the names of the files "
            "users put in the data folder (override it when remote_files() is empty)"
        )
    loaded = {split: _check_split(dataset, data_dir, split, where) for split in splits}
    _check_missing_files_error(dataset, splits[0] if splits else "test", where)
    return loaded


def _check_split(dataset: Dataset, data_dir: Path, split: str, where: str) -> LabelledImages:
    data = dataset.load(data_dir, split)
    where = f"{where}, {split} split from {data_dir}"
    if not isinstance(data, LabelledImages):
        raise ConformanceError(
            f"{where}: load() returned {type(data).__name__}, expected harness.api.LabelledImages"
        )
    images, labels = data.images, data.labels
    expected = ("N", *dataset.input_shape)
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8:
        raise ConformanceError(
            f"{where}: images are {_describe_array(images)}, expected a uint8 numpy array of "
            f"shape {expected} (scaling belongs inside the model)"
        )
    if images.ndim != 4 or images.shape[1:] != dataset.input_shape:
        raise ConformanceError(
            f"{where}: images have shape {images.shape}, expected {expected} (NHWC, as "
            "input_shape declares)"
        )
    if not images.flags.c_contiguous:
        raise ConformanceError(
            f"{where}: images are not C-contiguous; return np.ascontiguousarray(images)"
        )
    if len(images) == 0:
        raise ConformanceError(f"{where}: the split is empty")
    if not isinstance(labels, np.ndarray) or labels.dtype != np.int64:
        raise ConformanceError(
            f"{where}: labels are {_describe_array(labels)}, expected an int64 numpy array"
        )
    if labels.shape != (len(images),):
        raise ConformanceError(
            f"{where}: labels have shape {labels.shape} for {len(images)} images, expected "
            f"({len(images)},): one label per image"
        )
    out_of_range = np.flatnonzero((labels < 0) | (labels >= dataset.num_classes))
    if out_of_range.size:
        first = int(out_of_range[0])
        raise ConformanceError(
            f"{where}: {out_of_range.size} labels out of range, the first {labels[first]} at "
            f"index {first}; expected 0..{dataset.num_classes - 1} (one per class name)"
        )
    return data


def _check_missing_files_error(dataset: Dataset, split: str, where: str) -> None:
    with tempfile.TemporaryDirectory(prefix="harness-empty-") as empty:
        try:
            dataset.load(Path(empty), split)
        except DataError as exc:
            if empty not in str(exc):
                raise ConformanceError(
                    f"{where}: load() from an empty folder raised DataError({exc}), which does "
                    f"not name the folder {empty}: say which file is missing where"
                ) from None
            return
        except Exception as exc:
            raise ConformanceError(
                f"{where}: load() from an empty folder raised {type(exc).__name__}: {exc}; "
                "expected harness.errors.DataError naming the missing file"
            ) from exc
    raise ConformanceError(
        f"{where}: load() from an empty folder returned data; expected "
        "harness.errors.DataError naming the missing file"
    )


def check_model(
    spec: ModelSpec,
    input_shape: tuple[int, int, int],
    num_classes: int,
    variants: Iterable[str] | None = None,
) -> None:
    """Build each variant (all by default) for ``input_shape``; check its input and output, run
    a uint8 batch through it and train it one optimizer step with the harness's own training.
    """
    import keras

    from harness.suite import TrainingRecipe
    from harness.training import set_seeds, train

    _check_name(spec, f"model {getattr(spec, 'name', type(spec).__name__)!r}")
    declared = spec.variants
    if (
        not isinstance(declared, tuple)
        or not declared
        or not all(isinstance(v, str) and v for v in declared)
    ):
        raise ConformanceError(
            f"model {spec.name!r}: variants is {declared!r}, expected a non-empty tuple of names"
        )
    rng = np.random.default_rng(0)
    batch = rng.integers(0, 256, (CHECK_BATCH, *input_shape), dtype=np.uint8)
    labels = rng.integers(0, num_classes, CHECK_BATCH).astype(np.int64)
    for variant in declared if variants is None else tuple(variants):
        where = f"model {spec.name!r} variant {variant!r} for input {input_shape}"
        set_seeds(0)
        model = spec.build(variant, input_shape, num_classes)
        if not isinstance(model, keras.Model):
            raise ConformanceError(
                f"{where}: build() returned {type(model).__name__}, expected a keras.Model"
            )
        if len(model.inputs) != 1 or len(model.outputs) != 1:
            raise ConformanceError(
                f"{where}: the model has {len(model.inputs)} inputs and {len(model.outputs)} "
                "outputs, expected one of each (images in, logits out)"
            )
        given = tuple(model.inputs[0].shape)
        if given != (None, *input_shape):
            raise ConformanceError(
                f"{where}: the model's input shape is {given}, expected {(None, *input_shape)}"
            )
        if str(model.inputs[0].dtype) != "uint8":
            raise ConformanceError(
                f"{where}: the model's input dtype is {model.inputs[0].dtype}, expected uint8: "
                "declare keras.Input(..., dtype='uint8') and scale with a Rescaling layer"
            )
        declared_output = tuple(model.outputs[0].shape)
        if declared_output != (None, num_classes):
            raise ConformanceError(
                f"{where}: the model's output shape is {declared_output}, expected "
                f"{(None, num_classes)}: one logit per class"
            )
        logits = keras.ops.convert_to_numpy(model(batch, training=False))
        if (
            logits.shape != (CHECK_BATCH, num_classes)
            or logits.dtype != np.float32
            or not np.isfinite(logits).all()
        ):
            raise ConformanceError(
                f"{where}: a batch of {CHECK_BATCH} uint8 images gave {_describe_array(logits)}, "
                f"expected finite float32 logits of shape {(CHECK_BATCH, num_classes)}"
            )
        before = [w.copy() for w in model.get_weights()]
        recipe = TrainingRecipe(batch_size=CHECK_BATCH, steps={"default": 1})
        record = train(
            model, LabelledImages(batch, labels), recipe, steps=1, seed=0, progress=False
        )
        loss = record.history["loss"][-1]
        if not np.isfinite(loss):
            raise ConformanceError(f"{where}: one training step gave a loss of {loss}")
        if all(np.array_equal(a, b) for a, b in zip(before, model.get_weights(), strict=True)):
            raise ConformanceError(
                f"{where}: one training step changed no weight: are the layers trainable?"
            )
        keras.backend.clear_session()


def check_backend(
    backend: Backend,
    trained: TrainedModel,
    images: np.ndarray,
    reference_logits: np.ndarray,
    device: str = "cpu",
    options: Mapping[str, Any] | None = None,
) -> None:
    """Check the declarations, then convert and prepare ``trained`` on ``device`` (as the runner
    does) and hold the predictor's logits on ``images`` to ``reference_logits`` (the Keras
    model's): float32, the right shape, finite, and within the backend's declared ``parity``
    (the rule the runner's workers apply), batch by batch and one image at a time.
    ``describe()`` must return JSON-serialisable data.
    """
    where = f"backend {getattr(backend, 'name', type(backend).__name__)!r}"
    _check_name(backend, where)
    devices = backend.devices
    if (
        not isinstance(devices, tuple)
        or not devices
        or not all(isinstance(d, str) and d for d in devices)
    ):
        raise ConformanceError(f"{where}: devices is {devices!r}, expected a non-empty tuple")
    if device not in devices:
        raise ConformanceError(f"{where}: device {device!r} is not in devices {devices}")
    tolerance = backend.parity
    if not isinstance(tolerance, ParityTolerance):
        raise ConformanceError(
            f"{where}: parity is {tolerance!r}, expected a harness.api.ParityTolerance"
        )
    probe = backend.probe_devices()
    if not isinstance(probe, dict) or not set(probe) <= set(devices):
        keys = sorted(probe) if isinstance(probe, dict) else probe
        raise ConformanceError(
            f"{where}: probe_devices() returned keys {keys!r}, expected a dict whose keys are "
            f"among devices {devices}"
        )
    for name, reason in probe.items():
        if reason is not None and (not isinstance(reason, str) or not reason):
            raise ConformanceError(
                f"{where}: probe_devices()[{name!r}] is {reason!r}, expected None (usable) or "
                "a non-empty reason"
            )
    backend.convert(trained, dict(options or {}))  # as the runner does, before the workers
    predictor = backend.prepare(trained, device, dict(options or {}))
    if not isinstance(predictor, Predictor):
        raise ConformanceError(
            f"{where}: prepare() returned {type(predictor).__name__}, expected a "
            "harness.api.Predictor"
        )
    try:
        where = f"{where} on {device}, model {trained.model}/{trained.variant}"
        whole = _predict_checked(predictor, images, reference_logits.shape[1], where)
        _check_parity(whole, reference_logits, tolerance, f"{where}, one batch")
        count = min(2, len(images))
        single = np.concatenate(
            [
                _predict_checked(predictor, images[i : i + 1], whole.shape[1], where)
                for i in range(count)
            ]
        )
        _check_parity(single, reference_logits[:count], tolerance, f"{where}, one image at a time")
        details = predictor.describe()
        try:
            json.dumps(details)
        except TypeError as exc:
            raise ConformanceError(
                f"{where}: describe() must return JSON-serialisable data (it is recorded with "
                f"every row): {exc}"
            ) from None
        if not isinstance(details, dict):
            raise ConformanceError(f"{where}: describe() returned {details!r}, expected a dict")
    finally:
        predictor.close()


def _predict_checked(
    predictor: Predictor, batch: np.ndarray, num_classes: int, where: str
) -> np.ndarray:
    logits = predictor.predict(batch)
    expected = (len(batch), num_classes)
    if not isinstance(logits, np.ndarray) or logits.dtype != np.float32:
        raise ConformanceError(
            f"{where}: predict() returned {_describe_array(logits)}, expected a float32 numpy "
            f"array of shape {expected} on the host"
        )
    if logits.shape != expected:
        raise ConformanceError(
            f"{where}: predict() on a batch of {len(batch)} returned logits of shape "
            f"{logits.shape}, expected {expected}"
        )
    if not np.isfinite(logits).all():
        raise ConformanceError(f"{where}: predict() returned non-finite logits")
    return logits


def _check_parity(
    logits: np.ndarray, reference: np.ndarray, tolerance: ParityTolerance, where: str
) -> None:
    agree = logits.argmax(axis=1) == reference.argmax(axis=1)
    diff = np.abs(logits.astype(np.float64) - reference)
    if tolerance.holds(float(agree.mean()), float(diff.max())):
        return
    differ = np.flatnonzero(~agree)
    at = f" (they differ at images {differ[:5].tolist()})" if len(differ) else ""
    worst = np.unravel_index(int(diff.argmax()), diff.shape)
    raise ConformanceError(
        f"{where}: parity with the Keras reference is outside the backend's tolerance "
        f"({tolerance}): top-1 class agrees on {agree.mean():.2%} of {len(agree)} images{at}, "
        f"max |logit difference| {float(diff.max()):.3g} (image {worst[0]}, class {worst[1]})"
    )


@dataclass(frozen=True)
class Reference:
    """A trained model saved as the harness's cache would, with inputs and Keras's logits."""

    trained: TrainedModel
    images: np.ndarray
    reference_logits: np.ndarray


class ReferenceCnn(ModelSpec):
    """A tiny CNN with the layers the book's models use (conv, pool, dense, dropout): fast to
    train, and enough for a backend's conversion to show what it gets wrong."""

    name: ClassVar[str] = "conformance_cnn"
    description: ClassVar[str] = "the conformance kit's tiny reference CNN"
    variants: ClassVar[tuple[str, ...]] = ("tiny",)

    def build(self, variant: str, input_shape: tuple[int, int, int], num_classes: int) -> Any:
        import keras

        layers = keras.layers
        images = keras.Input(shape=input_shape, dtype="uint8", name="images")
        x = layers.Rescaling(1.0 / 255.0)(images)
        x = layers.Conv2D(4, 3, padding="same", activation="relu")(x)
        x = layers.MaxPooling2D(2)(x)
        x = layers.Conv2D(8, 3, padding="same", activation="relu")(x)
        x = layers.Flatten()(x)
        x = layers.Dense(16, activation="relu")(x)
        x = layers.Dropout(0.5)(x)
        return keras.Model(images, layers.Dense(num_classes)(x), name="conformance_cnn")


def train_reference(
    work_dir: Path,
    spec: ModelSpec | None = None,
    variant: str | None = None,
    data: LabelledImages | None = None,
    num_classes: int = REFERENCE_CLASSES,
    steps: int = 2,
    seed: int = 0,
    eval_images: np.ndarray | None = None,
) -> Reference:
    """Train ``spec`` (the kit's :class:`ReferenceCnn` by default) a few steps on ``data`` (random
    images of :data:`REFERENCE_INPUT_SHAPE` by default), save it in ``work_dir`` as the trained
    model cache does, and compute the Keras reference logits on ``eval_images`` (default: the
    training images) the way the runner does."""
    import keras

    from harness.suite import TrainingRecipe
    from harness.training import predict_logits, set_seeds, train

    spec = spec or ReferenceCnn()
    variant = variant or spec.variants[0]
    if data is None:
        rng = np.random.default_rng(seed)
        data = LabelledImages(
            rng.integers(0, 256, (REFERENCE_IMAGES, *REFERENCE_INPUT_SHAPE), dtype=np.uint8),
            rng.integers(0, num_classes, REFERENCE_IMAGES).astype(np.int64),
        )
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    set_seeds(seed)
    model = spec.build(variant, data.images.shape[1:], num_classes)
    recipe = TrainingRecipe(batch_size=min(16, len(data)), steps={"default": steps})
    train(model, data, recipe, steps=steps, seed=seed, progress=False)
    keras_path = work_dir / "model.keras"
    model.save(keras_path)
    saved = keras.saving.load_model(keras_path, compile=False)
    images = data.images if eval_images is None else eval_images
    logits = predict_logits(saved, images)
    keras.backend.clear_session()
    trained = TrainedModel(
        dataset="conformance",
        model=spec.name,
        variant=variant,
        keras_path=keras_path,
        artifact_dir=work_dir,
        cache_key=f"conformance-{spec.name}-{variant}-{seed}",
    )
    return Reference(trained, images, logits)


def check_backend_on_reference(
    backend: Backend, work_dir: Path, device: str = "cpu", options: Mapping[str, Any] | None = None
) -> None:
    """:func:`check_backend` on the kit's reference CNN, trained in ``work_dir``: what a
    backend's author runs without any dataset or model plugin."""
    reference = train_reference(work_dir)
    check_backend(
        backend,
        reference.trained,
        reference.images,
        reference.reference_logits,
        device=device,
        options=options,
    )


def discovered_datasets(plugin: str | None = None) -> list[Any]:
    """``pytest.param`` per installed dataset (only ``plugin``'s, if named), for parametrize."""
    return _discovered("datasets", plugin)


def discovered_models(plugin: str | None = None) -> list[Any]:
    """``pytest.param`` per installed model spec (only ``plugin``'s, if named)."""
    return _discovered("models", plugin)


def discovered_backends(plugin: str | None = None) -> list[Any]:
    """``pytest.param`` per installed backend (only ``plugin``'s, if named)."""
    return _discovered("backends", plugin)


def _discovered(kind: str, plugin: str | None) -> list[Any]:
    """Discovery through a host of its own, so the process-wide one is left as it was.

    A named plugin that is not installed, or is broken, is an error rather than an empty (and
    silently skipped) parameter list.
    """
    import pytest

    from harness.plugins import PluginHost

    host = PluginHost()
    entries = list(getattr(host.registry(), kind))
    if plugin is not None:
        broken = [b for b in host.broken if b.name == plugin]
        if broken:
            raise ConformanceError(
                f"plugin {plugin!r} is broken: it failed at {broken[0].stage}: {broken[0].error}"
            )
        if plugin not in host.plugins:
            installed = ", ".join(sorted(host.plugins)) or "none"
            raise ConformanceError(
                f"no plugin {plugin!r} is installed in entry-point group 'harness' (installed: "
                f"{installed}); pip install your package, or check its entry-point name"
            )
        entries = [entry for entry in entries if entry.plugin == plugin]
    return [pytest.param(entry.obj, id=entry.obj.name) for entry in entries]


@contextmanager
def registered(plugin: object, name: str) -> Iterator[Registry]:
    """Register ``plugin`` (a module or object with hook implementations) under ``name`` in
    this process's plugin host for a ``with`` block, and yield the registry that includes it:
    a plugin tested without being installed. Unregistered after the block, however it ends."""
    from harness.plugins import get_host

    host = get_host()
    host.register(plugin, name=name)
    try:
        yield host.registry()
    finally:
        host.unregister(name)


def _check_name(obj: Any, where: str) -> None:
    name = getattr(obj, "name", None)
    if not isinstance(name, str) or not name or name != name.strip():
        raise ConformanceError(f"{where}: name is {name!r}, expected a non-empty string")


def _describe_array(value: Any) -> str:
    if isinstance(value, np.ndarray):
        return f"{value.dtype} of shape {value.shape}"
    return type(value).__name__
