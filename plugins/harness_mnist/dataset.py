"""MNIST read from its four canonical IDX files, each gzipped or not.

Counts: a split may hold any number of images as long as the files agree with themselves (IDX
header vs payload) and with each other (images vs labels); ``verify`` reports a count other than
the canonical 60,000 / 10,000 as a warning. Content checksums identify the canonical release, so
they are compared only for a file with the canonical count: a subset cannot match.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import ClassVar

from harness.api import (
    DataError,
    Dataset,
    LabelledImages,
    RemoteFile,
    find_idx,
    read_labelled_images,
)

SPLIT_FILES: dict[str, tuple[str, str]] = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
"""Split -> (images file, labels file), without the optional ``.gz``."""

LOCATIONS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)
"""PyTorch's and Google's copies first, the original site last: it often refuses scripts.
torchvision and TensorFlow's tutorials download from these same places."""

DOWNLOAD_MD5 = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}
"""MD5 of the original ``.gz`` downloads (as torchvision checks them)."""
DOWNLOAD_BYTES = {
    "train-images-idx3-ubyte.gz": 9_912_422,
    "train-labels-idx1-ubyte.gz": 28_881,
    "t10k-images-idx3-ubyte.gz": 1_648_877,
    "t10k-labels-idx1-ubyte.gz": 4_542,
}


class MnistDataset(Dataset):
    """Handwritten digits 0-9, 28x28 grey: 60,000 training and 10,000 test images."""

    name = "mnist"
    description = "handwritten digits, 28x28x1, 10 classes (IDX files, gzipped or not)"
    input_shape = (28, 28, 1)
    class_names = tuple(str(digit) for digit in range(10))
    split_sizes: ClassVar[Mapping[str, int]] = {"train": 60000, "test": 10000}
    content_checksums: ClassVar[Mapping[str, str]] = {
        "train-images-idx3-ubyte": "md5:6bbc9ace898e44ae57da46a324031adb",
        "train-labels-idx1-ubyte": "md5:a25bea736e30d166cdddb491f175f624",
        "t10k-images-idx3-ubyte": "md5:2646ac647ad5339dbf082846283269ea",
        "t10k-labels-idx1-ubyte": "md5:27ae3e4e09519cfbb04c329615203637",
    }

    def remote_files(self) -> Sequence[RemoteFile]:
        return tuple(
            RemoteFile(
                filename,
                tuple(base + filename for base in LOCATIONS),
                f"md5:{md5}",
                DOWNLOAD_BYTES[filename],
            )
            for filename, md5 in DOWNLOAD_MD5.items()
        )

    def describe_files(self) -> str:
        names = [name for pair in SPLIT_FILES.values() for name in pair]
        return f"{', '.join(names)} (each gzipped as NAME.gz, or not)"

    def missing_files(self, data_dir: Path) -> list[RemoteFile]:
        return [
            remote
            for remote in self.remote_files()
            if find_idx(data_dir, remote.filename.removesuffix(".gz")) is None
        ]

    def write_synthetic(self, data_dir: Path, train: int, test: int, seed: int) -> None:
        from harness.api import write_mnist

        write_mnist(data_dir, train=train, test=test, seed=seed)

    def load(self, data_dir: Path, split: str) -> LabelledImages:
        """Read one split; the plain file is used when both it and NAME.gz are present."""
        images_name, labels_name = SPLIT_FILES[split]
        height, width, _ = self.input_shape
        return read_labelled_images(
            self._require(data_dir, images_name),
            self._require(data_dir, labels_name),
            image_shape=(height, width),
            num_classes=self.num_classes,
            canonical_count=self.split_sizes[split],
            content_checksums=(
                self.content_checksums[images_name],
                self.content_checksums[labels_name],
            ),
        )

    def _require(self, data_dir: Path, name: str) -> Path:
        path = find_idx(data_dir, name)
        if path is None:
            from harness.api import how_to_provide

            raise DataError(
                f"{data_dir / name}(.gz): file not found. {how_to_provide(self, data_dir)}; "
                "or run `harness data fetch mnist`"
            )
        return path
