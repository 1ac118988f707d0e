"""The base classes plugins implement: the whole plugin contract in one place.

A plugin's hooks (see :mod:`harness.hookspecs`) register instances of these classes. Hooks only
discover; these objects do the work. Each class has few abstract methods; everything else has a
default. ``docs/plugins.md`` documents each method, and a test keeps the two in step.

Heavy libraries (TensorFlow, ONNX Runtime) are imported inside methods, never at module level,
so that discovering plugins stays fast.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

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
    """Name inside the data folder."""
    urls: tuple[str, ...]
    """The canonical location first, then mirrors, tried in order."""
    checksum: str
    """``"sha256:<hex>"`` or ``"md5:<hex>"`` of the downloaded bytes; a mismatch is discarded."""


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

    def files(self) -> tuple[str, ...]:
        """Names of the files this dataset reads from the data folder."""
        return tuple(remote.filename for remote in self.remote_files())

    def remote_files(self) -> Sequence[RemoteFile]:
        """Files that can be downloaded when missing; empty if the dataset is local only."""
        return ()

    @abstractmethod
    def load(self, data_dir: Path, split: str) -> LabelledImages:
        """Read one split (``"train"`` or ``"test"``) from ``data_dir``.

        Raises :class:`harness.errors.DataError` naming the file when a file is missing,
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


class Backend(ABC):
    """An inference runtime that prepares trained models on its devices."""

    name: ClassVar[str]
    description: ClassVar[str] = ""
    devices: ClassVar[tuple[str, ...]] = ("cpu",)
    """Every device this backend knows how to use."""

    def probe_devices(self) -> dict[str, str | None]:
        """Cheaply say which devices are usable here: ``None`` if usable, else the reason not.

        Called by ``harness list``: must not import heavy runtimes. ``prepare`` makes the
        authoritative check.
        """
        return dict.fromkeys(self.devices)

    @abstractmethod
    def prepare(self, model: TrainedModel, device: str, options: Mapping[str, Any]) -> Predictor:
        """Load (and convert, if needed) ``model`` for ``device``.

        ``options`` are this backend's settings from the suite (e.g. thread counts). Raise
        :class:`harness.errors.DeviceUnavailable` with the reason when the device is not really
        in use (e.g. a silent fallback to the CPU): such a cell is ``unavailable``, never timed.
        """
