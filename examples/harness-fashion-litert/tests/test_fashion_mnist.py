"""Fashion-MNIST reads its IDX files from the fashion-mnist/ subfolder, and refuses bad ones."""

import gzip
from pathlib import Path

import numpy as np
import pytest

from harness.api import DataError, write_idx
from harness_fashion_litert.fashion_mnist import FOLDER, FashionMnistDataset, write_synthetic


def test_reads_both_splits_from_the_subfolder(tmp_path: Path) -> None:
    write_synthetic(tmp_path, train=30, test=20, seed=3)
    dataset = FashionMnistDataset()
    train, test = dataset.load(tmp_path, "train"), dataset.load(tmp_path, "test")
    assert (train.images.shape, test.images.shape) == ((30, 28, 28, 1), (20, 28, 28, 1))
    assert set(np.unique(test.labels)) <= set(range(10))


def test_reads_uncompressed_files_as_well_as_gzipped_ones(tmp_path: Path) -> None:
    folder = write_synthetic(tmp_path, train=10, test=10)
    expected = FashionMnistDataset().load(tmp_path, "test")
    for packed in folder.glob("t10k-*.gz"):
        packed.with_suffix("").write_bytes(gzip.decompress(packed.read_bytes()))
        packed.unlink()
    plain = FashionMnistDataset().load(tmp_path, "test")
    assert np.array_equal(plain.images, expected.images)
    assert np.array_equal(plain.labels, expected.labels)


def test_missing_files_name_the_subfolder_and_the_debian_location(tmp_path: Path) -> None:
    with pytest.raises(DataError) as failure:
        FashionMnistDataset().load(tmp_path, "test")
    assert str(tmp_path / FOLDER / "t10k-images-idx3-ubyte") in str(failure.value)
    assert "/usr/share/datasets/fashion-mnist/" in str(failure.value)
    assert len(FashionMnistDataset().missing_files(tmp_path)) == 4


def test_a_truncated_images_file_is_an_error_naming_it(tmp_path: Path) -> None:
    folder = write_synthetic(tmp_path, train=10, test=10)
    images = folder / "t10k-images-idx3-ubyte.gz"
    raw = gzip.decompress(images.read_bytes())
    images.write_bytes(gzip.compress(raw[:-100]))
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte\.gz: truncated"):
        FashionMnistDataset().load(tmp_path, "test")


def test_a_label_out_of_range_is_an_error_naming_it(tmp_path: Path) -> None:
    folder = write_synthetic(tmp_path, train=10, test=10)
    write_idx(folder / "t10k-labels-idx1-ubyte.gz", np.full(10, 10, np.uint8), compress=True)
    with pytest.raises(DataError, match="label out of range: 10 at index 0"):
        FashionMnistDataset().load(tmp_path, "test")


def test_images_and_labels_of_different_counts_are_an_error(tmp_path: Path) -> None:
    folder = write_synthetic(tmp_path, train=10, test=10)
    write_idx(folder / "t10k-labels-idx1-ubyte.gz", np.zeros(9, np.uint8), compress=True)
    with pytest.raises(DataError, match=r"9 labels, but .* holds 10 images"):
        FashionMnistDataset().load(tmp_path, "test")


def test_the_dataset_writes_its_own_synthetic_files_for_smoke_runs(tmp_path):
    dataset = FashionMnistDataset()
    dataset.write_synthetic(tmp_path, train=12, test=8, seed=1)
    assert len(dataset.load(tmp_path, "train")) == 12
    assert len(dataset.load(tmp_path, "test")) == 8
