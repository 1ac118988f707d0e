"""Generated files: canonical formats, balanced, deterministic per seed, and learnable."""

import numpy as np
import pytest

from harness.synthetic import write_all, write_cifar10, write_mnist
from harness_cifar10.dataset import Cifar10Dataset
from harness_mnist.dataset import MnistDataset


def _bytes_of(folder):
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path):
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        write_all(tmp_path / name, train=40, test=20, seed=seed)

    assert _bytes_of(tmp_path / "a") == _bytes_of(tmp_path / "b")
    assert _bytes_of(tmp_path / "a") != _bytes_of(tmp_path / "c")


@pytest.mark.parametrize("dataset", [MnistDataset(), Cifar10Dataset()], ids=lambda d: d.name)
def test_classes_are_balanced_and_every_file_passes_verification(tmp_path, dataset):
    write_all(tmp_path, train=95, test=30, seed=3)

    with pytest.warns(UserWarning, match="the canonical release has"):
        counts = dataset.verify(tmp_path)

    assert counts["train"] == (10, 10, 10, 10, 10, 9, 9, 9, 9, 9)
    assert counts["test"] == (3,) * 10


def test_plain_mnist_and_extracted_cifar_are_written_on_request(tmp_path):
    paths = write_mnist(tmp_path, train=10, test=10, gzip=False)
    folder = write_cifar10(tmp_path, train=10, test=10, extracted=True)

    assert [p.name for p in paths] == [
        "train-images-idx3-ubyte",
        "train-labels-idx1-ubyte",
        "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte",
    ]
    assert folder.name == "cifar-10-batches-py" and (folder / "batches.meta").is_file()


@pytest.mark.parametrize("dataset", [MnistDataset(), Cifar10Dataset()], ids=lambda d: d.name)
def test_images_are_learnable_a_nearest_mean_classifier_beats_chance(tmp_path, dataset):
    write_all(tmp_path, train=200, test=100, seed=0)
    train, test = dataset.load(tmp_path, "train"), dataset.load(tmp_path, "test")
    flat_train = train.images.reshape(len(train), -1).astype(np.float32)
    flat_test = test.images.reshape(len(test), -1).astype(np.float32)
    means = np.stack([flat_train[train.labels == c].mean(axis=0) for c in range(10)])

    distances = ((flat_test[:, None, :] - means[None]) ** 2).sum(axis=2)
    accuracy = (distances.argmin(axis=1) == test.labels).mean()

    assert accuracy > 0.5  # chance is 0.1
