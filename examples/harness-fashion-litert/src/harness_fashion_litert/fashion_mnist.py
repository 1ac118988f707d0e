"""Fashion-MNIST: Zalando's drop-in replacement for MNIST, harder to classify.

The same four IDX file names as MNIST, so they live in their own ``fashion-mnist/`` subfolder of
the data folder, each gzipped or not. Debian's ``dataset-fashion-mnist`` package installs them
as ``/usr/share/datasets/fashion-mnist/*.gz``: ``--data-dir /usr/share/datasets`` reads them in
place. Files are parsed with :func:`harness.api.read_labelled_images`, as MNIST's are, which
validates every header and length before trusting it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import ClassVar

from harness.api import (
    DataError,
    Dataset,
    LabelledImages,
    RemoteFile,
    find_idx,
    hookimpl,
    read_labelled_images,
)

FOLDER = "fashion-mnist"
SPLIT_FILES: dict[str, tuple[str, str]] = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
"""Split -> (images file, labels file), without the optional ``.gz``."""

LOCATIONS = (
    "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
    "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
)
DOWNLOAD_MD5 = {
    "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
    "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
    "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
    "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
}
"""MD5 of the published ``.gz`` files (as torchvision checks them). Debian recompresses them, so
local files are held to the content checksums instead."""


class FashionMnistDataset(Dataset):
    """Zalando's article images, 28x28 grey, 10 classes: 60,000 training and 10,000 test."""

    name = "fashion_mnist"
    description = "Zalando article images, 28x28x1, 10 classes (IDX files in fashion-mnist/)"
    input_shape = (28, 28, 1)
    class_names = (
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    )
    split_sizes: ClassVar[Mapping[str, int]] = {"train": 60000, "test": 10000}
    content_checksums: ClassVar[Mapping[str, str]] = {
        "train-images-idx3-ubyte": "md5:f4a8712d7a061bf5bd6d2ca38dc4d50a",
        "train-labels-idx1-ubyte": "md5:9018921c3c673c538a1fc5bad174d6f9",
        "t10k-images-idx3-ubyte": "md5:8181f5470baa50b63fa0f6fddb340f0a",
        "t10k-labels-idx1-ubyte": "md5:15d484375f8d13e6eb1aabb0c3f46965",
    }

    def remote_files(self) -> Sequence[RemoteFile]:
        return tuple(
            RemoteFile(f"{FOLDER}/{name}", tuple(base + name for base in LOCATIONS), f"md5:{md5}")
            for name, md5 in DOWNLOAD_MD5.items()
        )

    def describe_files(self) -> str:
        names = [f"{FOLDER}/{name}" for pair in SPLIT_FILES.values() for name in pair]
        return f"{', '.join(names)} (each gzipped as NAME.gz, or not)"

    def missing_files(self, data_dir: Path) -> list[RemoteFile]:
        return [
            remote
            for remote in self.remote_files()
            if find_idx(data_dir / FOLDER, Path(remote.filename).name.removesuffix(".gz")) is None
        ]

    def write_synthetic(self, data_dir: Path, train: int, test: int, seed: int) -> None:
        write_synthetic(data_dir, train=train, test=test, seed=seed)

    def load(self, data_dir: Path, split: str) -> LabelledImages:
        folder = Path(data_dir) / FOLDER
        images_name, labels_name = SPLIT_FILES[split]
        height, width, _ = self.input_shape
        return read_labelled_images(
            self._require(folder, images_name),
            self._require(folder, labels_name),
            image_shape=(height, width),
            num_classes=self.num_classes,
            canonical_count=self.split_sizes[split],
            content_checksums=(
                self.content_checksums[images_name],
                self.content_checksums[labels_name],
            ),
        )

    def _require(self, folder: Path, name: str) -> Path:
        path = find_idx(folder, name)
        if path is None:
            raise DataError(
                f"{folder / name}(.gz): file not found. Fashion-MNIST's four IDX files go in the "
                f"{FOLDER}/ subfolder of the data folder (Debian's dataset-fashion-mnist puts "
                "them in /usr/share/datasets/fashion-mnist/: use --data-dir /usr/share/datasets)"
            )
        return path


def write_synthetic(data_dir: Path, train: int = 200, test: int = 50, seed: int = 0) -> Path:
    """Tiny, learnable files in Fashion-MNIST's layout (for tests and smoke runs); returns the
    subfolder. The harness's own MNIST generator serves, as the two formats are the same."""
    from harness.api import write_mnist

    folder = Path(data_dir) / FOLDER
    write_mnist(folder, train=train, test=test, seed=seed)
    return folder


@hookimpl
def register_datasets(register: Callable[[Dataset], None]) -> None:
    register(FashionMnistDataset())
