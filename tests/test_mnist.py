"""The MNIST plugin reads the canonical IDX files, gzipped or not, and refuses bad ones."""

import warnings

import numpy as np
import pytest

from harness.checksums import ContentChecksumWarning
from harness.errors import DataError
from harness.idx import read_idx, write_idx
from harness.synthetic import write_mnist
from harness_mnist.dataset import MnistDataset


@pytest.mark.parametrize("gzip", [True, False])
def test_loads_both_splits_as_uint8_nhwc_with_int64_labels(tmp_path, gzip):
    write_mnist(tmp_path, train=30, test=20, gzip=gzip)

    train = MnistDataset().load(tmp_path, "train")
    test = MnistDataset().load(tmp_path, "test")

    assert train.images.shape == (30, 28, 28, 1) and train.images.dtype == np.uint8
    assert train.images.flags.c_contiguous
    assert train.labels.dtype == np.int64 and len(test) == 20
    raw = read_idx(tmp_path / ("train-images-idx3-ubyte" + (".gz" if gzip else ""))).array
    np.testing.assert_array_equal(train.images[..., 0], raw)


def test_declares_what_models_are_built_for():
    dataset = MnistDataset()

    assert dataset.input_shape == (28, 28, 1)
    assert dataset.class_names == tuple("0123456789")
    assert dict(dataset.split_sizes) == {"train": 60000, "test": 10000}


def test_label_out_of_range_is_an_error_naming_the_file(tmp_path):
    write_mnist(tmp_path, train=20, test=10, gzip=False)
    labels = np.zeros(20, np.uint8)
    labels[7] = 10
    path = write_idx(tmp_path / "train-labels-idx1-ubyte", labels)

    with pytest.raises(DataError, match="label out of range: 10 at index 7") as error:
        MnistDataset().load(tmp_path, "train")
    assert str(path) in str(error.value)


def test_images_and_labels_of_different_counts_are_an_error_naming_the_file(tmp_path):
    write_mnist(tmp_path, train=20, test=10, gzip=False)
    path = write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.zeros(9, np.uint8))

    with pytest.raises(DataError, match=r"wrong count: 9 labels, but .* holds 10 images") as error:
        MnistDataset().load(tmp_path, "test")
    assert str(path) in str(error.value)


def test_images_of_another_size_are_refused(tmp_path):
    write_mnist(tmp_path, train=20, test=10, gzip=False)
    write_idx(tmp_path / "t10k-images-idx3-ubyte", np.zeros((10, 32, 32), np.uint8))

    with pytest.raises(DataError, match="images are 32x32, expected 28x28"):
        MnistDataset().load(tmp_path, "test")


def test_missing_file_error_says_where_and_how_to_provide_it(tmp_path):
    with pytest.raises(DataError) as error:
        MnistDataset().load(tmp_path, "train")
    message = str(error.value)
    assert str(tmp_path) in message and "train-images-idx3-ubyte" in message
    assert "harness data fetch mnist" in message and "HARNESS_DATA_DIR" in message


def test_canonical_sized_file_with_other_content_is_used_with_a_warning(tmp_path):
    write_mnist(tmp_path, train=20, test=10)
    dataset = MnistDataset()
    dataset.split_sizes = {"train": 20, "test": 10}  # as if these were the canonical sizes

    with pytest.warns(ContentChecksumWarning) as caught:
        data = dataset.load(tmp_path, "train")

    assert len(data) == 20
    messages = sorted(str(w.message) for w in caught)
    assert len(messages) == 2
    assert "train-images-idx3-ubyte.gz" in messages[0]
    assert "the canonical release has md5:6bbc9ace898e44ae57da46a324031adb" in messages[0]
    assert "train-labels-idx1-ubyte.gz" in messages[1]


def test_matching_content_checksums_load_silently(tmp_path):
    write_mnist(tmp_path, train=20, test=10)
    dataset = MnistDataset()
    dataset.split_sizes = {"train": 20, "test": 10}
    dataset.content_checksums = {
        name: read_idx(tmp_path / f"{name}.gz").content_md5
        for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte")
    }

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        dataset.load(tmp_path, "train")


def test_plain_or_gzipped_files_both_count_as_present(tmp_path):
    dataset = MnistDataset()
    assert len(dataset.missing_files(tmp_path)) == 4

    write_mnist(tmp_path, train=10, test=10, gzip=False)

    assert dataset.missing_files(tmp_path) == []
