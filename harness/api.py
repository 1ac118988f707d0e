"""The harness's public API: everything a plugin needs, importable from this one module.

A plugin's hooks (see :mod:`harness.hookspecs`), marked with :data:`hookimpl`, register
instances of the base classes defined here. Hooks only discover; these objects do the work. Each
class has few abstract methods; everything else has a default. ``docs/plugins.md`` documents
each method, and a test keeps the two in step.

Beside the classes, ``__all__`` re-exports the errors plugins raise and the helpers they reuse
(safe file parsers, checksum warnings, synthetic data writers, the runner's model cache): a
plugin imports from ``harness.api`` only, its tests from ``harness.testing`` (the conformance
kit) too. Every other module of ``harness`` is internal and may change.

Heavy libraries (TensorFlow, ONNX Runtime, pandas) are imported inside methods, never at module
level, so that discovering plugins stays fast; the helpers load on first use (``__getattr__``).
"""

from __future__ import annotations

import importlib
import warnings
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from harness import hookimpl
from harness.errors import DataError, DeviceUnavailable, HarnessError, SuiteError

if TYPE_CHECKING:  # the helpers' own types for type checkers; at run time, see __getattr__
    from harness.checksums import ContentChecksumWarning, warn_if_content_differs
    from harness.download import how_to_provide
    from harness.idx import find_idx, read_labelled_images, write_idx
    from harness.model_cache import load_model
    from harness.safe_pickle import UnsafePickleError, safe_loads
    from harness.synthetic import write_cifar10, write_mnist

__all__ = [
    "SPLITS",
    "Backend",
    "ContentChecksumWarning",
    "DataError",
    "Dataset",
    "DeviceUnavailable",
    "HarnessError",
    "LabelledImages",
    "ModelSpec",
    "Option",
    "ParityTolerance",
    "Predictor",
    "RemoteFile",
    "SuiteError",
    "TrainedModel",
    "UnsafePickleError",
    "find_idx",
    "hookimpl",
    "how_to_provide",
    "load_model",
    "read_labelled_images",
    "safe_loads",
    "warn_if_content_differs",
    "write_cifar10",
    "write_idx",
    "write_mnist",
]

SPLITS = ("train", "test")


@dataclass(frozen=True)
class LabelledImages:
    """One split of a dataset: uint8 images in NHWC layout and integer labels."""

    images: np.ndarray
    """uint8 array of shape (N, H, W, C)."""
    labels: np.ndarray
    """int64 array of shape (N,), each in ``range(num_classes)``."""

    def __len__(self) -> int:
        return len(self.labels)


@dataclass(frozen=True)
class RemoteFile:
    """A file a dataset can fetch into the data folder when it is missing."""

    filename: str
    """Path relative to the data folder; it may include a subfolder."""
    urls: tuple[str, ...]
    """Where the files can be downloaded, tried in order: the most reliable first."""
    checksum: str
    """``"sha256:<hex>"`` or ``"md5:<hex>"`` of the downloaded bytes; a mismatch is discarded."""
    size: int | None = None
    """Bytes of the download, if known: a location that announces another size or sends more is
    refused before it fills the disk."""


class Dataset(ABC):
    """An image classification dataset read from canonical files in a data folder."""

    name: ClassVar[str]
    description: ClassVar[str] = ""
    input_shape: ClassVar[tuple[int, int, int]]
    """(height, width, channels) of every image."""
    class_names: tuple[str, ...]
    """One name per class, in label order."""
    split_sizes: ClassVar[Mapping[str, int]]
    """Number of images in each split, e.g. ``{"train": 60000, "test": 10000}``."""

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    content_checksums: ClassVar[Mapping[str, str]] = {}
    """Canonical ``"md5:<hex>"`` of each file's uncompressed content, by file name.

    Held against local files whatever their wrapping (gzip, tar): a file that parses but differs
    is used with a :class:`ContentChecksumWarning`. Empty: nothing compared.
    """

    def files(self) -> tuple[str, ...]:
        """Names of the files this dataset reads from the data folder."""
        return tuple(remote.filename for remote in self.remote_files())

    def describe_files(self) -> str:
        """The files a user must put in the data folder, for error messages and ``harness data``.

        Override to name accepted alternatives (e.g. "gzipped or not").
        """
        return ", ".join(self.files())

    def remote_files(self) -> Sequence[RemoteFile]:
        """Files that can be downloaded when missing; empty if the dataset is local only."""
        return ()

    def missing_files(self, data_dir: Path) -> list[RemoteFile]:
        """The remote files ``data_dir`` lacks, so ``harness data fetch`` downloads only those.

        The default looks for each file under its own name; override when another form of the
        same data is accepted (an uncompressed or extracted copy).
        """
        return [r for r in self.remote_files() if not (data_dir / r.filename).exists()]

    def write_synthetic(self, data_dir: Path, train: int, test: int, seed: int) -> None:
        """Write tiny learnable files in this dataset's canonical format into ``data_dir``.

        Suites with ``synthetic_data = true`` (smoke, CI) run on these, so that the whole
        pipeline, parsing included, runs without the real data. Optional: a dataset without
        it cannot be part of such a suite.
        """
        raise NotImplementedError(
            f"dataset {self.name!r} cannot generate synthetic data (no write_synthetic)"
        )

    def verify(self, data_dir: Path) -> dict[str, tuple[int, ...]]:
        """Load every split and hold it to this dataset's declared contract.

        Returns, per split, the number of images of each class (in label order). Raises
        :class:`DataError` when a split breaks the contract
        (:meth:`load_checked`). A split whose size differs from :attr:`split_sizes` is
        internally consistent data, just not the canonical release (e.g. a subset, or generated
        test data): that is a warning.
        """
        counts: dict[str, tuple[int, ...]] = {}
        for split, canonical_size in self.split_sizes.items():
            labels = self.load_checked(data_dir, split).labels
            where = f"{self.name} {split} split in {data_dir}"
            if len(labels) != canonical_size:
                warnings.warn(
                    f"{where}: {len(labels):,} images, the canonical release has "
                    f"{canonical_size:,}",
                    stacklevel=2,
                )
            per_class = np.bincount(labels, minlength=self.num_classes)
            counts[split] = tuple(int(count) for count in per_class)
        return counts

    def load_checked(self, data_dir: Path, split: str) -> LabelledImages:
        """:meth:`load`, held to the contract every consumer relies on, so that a plugin's
        bad data is a DataError naming the split rather than a traceback deep in training or
        scoring: at least one image; images uint8 C-contiguous ``(N, *input_shape)``; labels
        int64 ``(N,)`` within ``0..num_classes - 1``."""
        data = self.load(data_dir, split)
        images, labels = data.images, data.labels
        where = f"{self.name} {split} split in {data_dir}"
        expected_shape = ("N", *self.input_shape)
        if (
            images.dtype != np.uint8
            or images.shape[1:] != self.input_shape
            or not images.flags.c_contiguous
        ):
            raise DataError(
                f"{where}: images are {images.dtype} {images.shape}, expected C-contiguous "
                f"uint8 of shape {expected_shape}"
            )
        if not len(images):
            raise DataError(f"{where}: the split holds 0 images, expected at least 1")
        if labels.dtype != np.int64 or labels.shape != (len(images),):
            raise DataError(
                f"{where}: labels are {labels.dtype} {labels.shape}, expected int64 of "
                f"shape ({len(images)},), one per image"
            )
        if labels.min() < 0 or labels.max() >= self.num_classes:
            raise DataError(
                f"{where}: labels span {labels.min()}..{labels.max()}, expected "
                f"0..{self.num_classes - 1}"
            )
        return data

    @abstractmethod
    def load(self, data_dir: Path, split: str) -> LabelledImages:
        """Read one split (``"train"`` or ``"test"``) from ``data_dir``.

        Raises :class:`DataError` naming the file when a file is missing,
        truncated or malformed. Files that parse but fail a content checksum are used, with a
        warning naming the mismatch.
        """


class ModelSpec(ABC):
    """A model architecture that builds a Keras model for any dataset's input shape."""

    name: ClassVar[str]
    description: ClassVar[str] = ""
    variants: ClassVar[tuple[str, ...]]
    """Configurations of the architecture the planner may ask for, e.g. ``("pool", "nopool")``."""

    @abstractmethod
    def build(self, variant: str, input_shape: tuple[int, int, int], num_classes: int) -> Any:
        """Return an uncompiled ``keras.Model``.

        It takes uint8 NHWC images (scaling is a layer inside the model, so every backend gets
        the same input) and returns logits of shape (N, num_classes). Seeds are set by the
        caller before ``build`` is called.
        """


@dataclass(frozen=True)
class TrainedModel:
    """A trained model in the trained-model cache, as backends receive it."""

    dataset: str
    model: str
    variant: str
    keras_path: Path
    """The saved ``.keras`` file."""
    artifact_dir: Path
    """This model's cache folder: backends keep their conversions here (e.g. ``model.onnx``)."""
    cache_key: str

    def artifact(self, backend: str, options: Mapping[str, Any] | None = None) -> Path:
        """The file ``backend`` converts this model to (``"onnxruntime"``: the ONNX export),
        made once and cached in :attr:`artifact_dir`, so that one backend builds on another's
        conversion (an int8 backend quantizes the ONNX export) without knowing its file name.
        ``options`` are that backend's, as in a suite's ``[backend_options]``."""
        from harness.plugins import get_host

        return get_host().registry().backend(backend).artifact(self, options or {})


class Predictor(ABC):
    """A model prepared by a backend on one device, ready to time."""

    @abstractmethod
    def predict(self, batch: np.ndarray) -> np.ndarray:
        """Run one uint8 NHWC batch; return float32 logits (N, num_classes) on the host.

        The work must be finished when this returns (on a GPU: synchronized, result copied to
        the host), because the latency engine times exactly this call.
        """

    def describe(self) -> dict[str, Any]:
        """What actually runs, recorded with every row: inference path, threads, providers."""
        return {}

    def close(self) -> None:  # noqa: B027 - optional hook with a no-op default
        """Release sessions and memory."""


@dataclass(frozen=True)
class ParityTolerance:
    """How far a backend's logits may stray from the Keras reference's on the same images.

    The defaults hold an exact (fp32) runtime to rounding error; a backend that changes the
    arithmetic on purpose (int8 quantization) declares a looser one, so that its cells are
    judged by what it promises rather than by the fp32 rule.
    """

    min_top1_agreement: float = 0.999
    """The least share of images whose top-1 class matches the reference's (0..1)."""
    max_abs_logit_diff: float = 1e-3
    """The largest |logit difference| from the reference, over every image and class."""

    def holds(self, top1_agreement: float, max_abs_diff: float) -> bool:
        return top1_agreement >= self.min_top1_agreement and max_abs_diff <= self.max_abs_logit_diff

    def __str__(self) -> str:
        return (
            f"agreement >= {self.min_top1_agreement:.2%}, max diff <= {self.max_abs_logit_diff:g}"
        )


@dataclass(frozen=True)
class Option:
    """One key a backend's ``[backend_options.NAME]`` table may set.

    Its type is the default's: ``bool``, ``int`` or ``float`` (counts and sizes, never
    negative) or ``str`` (one of ``choices``, when given).
    """

    default: bool | int | float | str
    help: str = ""
    choices: tuple[str, ...] = ()

    def check(self, where: str, value: Any) -> Any:
        """``value`` if it fits, else a :class:`SuiteError` naming ``where``."""
        kind = type(self.default)
        if kind is bool:
            fits, wanted = isinstance(value, bool), "true or false"
        elif kind is str:
            fits = isinstance(value, str) and (not self.choices or value in self.choices)
            wanted = f"one of {', '.join(self.choices)}" if self.choices else "a string"
        else:
            numbers = (int,) if kind is int else (int, float)
            fits = isinstance(value, numbers) and not isinstance(value, bool) and value >= 0
            wanted = "a non-negative int" if kind is int else "a non-negative number"
        if not fits:
            raise SuiteError(f"{where} must be {wanted}, got {value!r}")
        return value


class Backend(ABC):
    """An inference runtime that prepares trained models on its devices."""

    name: ClassVar[str]
    description: ClassVar[str] = ""
    devices: ClassVar[tuple[str, ...]] = ("cpu",)
    """Every device this backend knows how to use."""
    parity: ClassVar[ParityTolerance] = ParityTolerance()
    """What the worker and the conformance kit hold this backend's logits to."""
    options: ClassVar[Mapping[str, Option] | None] = None
    """The keys its ``[backend_options.NAME]`` table may set; ``None``: not declared, so any
    table reaches ``prepare`` unchecked."""

    def check_options(self, options: Mapping[str, Any]) -> dict[str, Any]:
        """The suite's options for this backend, checked against :attr:`options`, with the
        defaults filled in.

        The planner calls it before anything trains, so that a typo is an error naming the key
        and the allowed ones, not a failed cell an hour later; ``convert`` and ``prepare`` call
        it again for their settings. Override to add a rule that spans keys (call ``super()``
        first).
        """
        if self.options is None:
            return dict(options)
        where = f"backend_options.{self.name}"
        unknown = [key for key in options if key not in self.options]
        if unknown:
            raise SuiteError(
                f"{where}: unknown key {unknown[0]!r}; allowed: {', '.join(self.options)}"
            )
        return {
            key: option.check(f"{where}.{key}", options[key]) if key in options else option.default
            for key, option in self.options.items()
        }

    def probe_devices(self) -> dict[str, str | None]:
        """Cheaply say which devices are usable here: ``None`` if usable, else the reason not.

        Called by ``harness list``: must not import heavy runtimes. ``prepare`` makes the
        authoritative check.
        """
        return dict.fromkeys(self.devices)

    def convert(self, model: TrainedModel, options: Mapping[str, Any]) -> None:  # noqa: B027
        """Make, once per trained model, the artifacts ``prepare`` would otherwise make in every
        worker (e.g. an ONNX export, kept in ``model.artifact_dir``).

        The runner calls it in its own process, which already holds TensorFlow, before the
        model's workers start: a worker that then only reads the artifact need not import
        TensorFlow (about 9 s on two cores). ``load_model(model.keras_path)`` returns the model
        the runner holds, without reading the file again. Optional; ``prepare`` must still work
        without it.
        If it raises, the runner warns and the worker's ``prepare`` tries again, so the failure
        is recorded in the cell.
        """

    def artifact(self, model: TrainedModel, options: Mapping[str, Any]) -> Path:
        """The file :meth:`convert` makes of ``model``, made now unless cached, for other
        backends to build on (they ask through :meth:`TrainedModel.artifact`). Default: this
        backend shares none."""
        raise HarnessError(
            f"backend {self.name!r} shares no conversion of its models: it has no artifact()"
        )

    @abstractmethod
    def prepare(self, model: TrainedModel, device: str, options: Mapping[str, Any]) -> Predictor:
        """Load (and convert, if needed) ``model`` for ``device``.

        ``options`` are this backend's settings from the suite (e.g. thread counts). Raise
        :class:`DeviceUnavailable` with the reason when the device is not really
        in use (e.g. a silent fallback to the CPU): such a cell is ``unavailable``, never timed.
        """


_HELPERS: dict[str, str] = {
    "ContentChecksumWarning": "harness.checksums",
    "warn_if_content_differs": "harness.checksums",
    "find_idx": "harness.idx",
    "read_labelled_images": "harness.idx",
    "write_idx": "harness.idx",
    "how_to_provide": "harness.download",
    "load_model": "harness.model_cache",
    "UnsafePickleError": "harness.safe_pickle",
    "safe_loads": "harness.safe_pickle",
    "write_cifar10": "harness.synthetic",
    "write_mnist": "harness.synthetic",
}
"""The helpers of ``__all__``, by the module that defines them. They are imported when first
asked for, not with this module: most of those modules import the classes above (importing them
here would be a cycle), and a plugin that reads no files should not pay for the parsers."""


def __getattr__(name: str) -> Any:
    """A helper of ``__all__``, imported on first use (PEP 562)."""
    module = _HELPERS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups find it without calling this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_HELPERS))
