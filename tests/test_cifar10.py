"""The CIFAR-10 plugin reads the python-version archive or its folder, safely."""

import gzip
import io
import tarfile

import numpy as np
import pytest

from harness.errors import DataError
from harness.safe_pickle import UnsafePickleError
from harness.synthetic import python2_pickle, write_cifar10
from harness_cifar10.dataset import Cifar10Dataset


def _batch(rows, labels):
    return python2_pickle({b"batch_label": b"b", b"labels": list(labels), b"data": rows})


def _replace_member(folder, name, payload):
    (folder / name).write_bytes(payload)


@pytest.mark.parametrize("extracted", [False, True])
def test_loads_both_splits_as_uint8_nhwc_with_int64_labels(tmp_path, extracted):
    write_cifar10(tmp_path, train=23, test=7, extracted=extracted)

    train = Cifar10Dataset().load(tmp_path, "train")
    test = Cifar10Dataset().load(tmp_path, "test")

    assert train.images.shape == (23, 32, 32, 3) and train.images.dtype == np.uint8
    assert train.images.flags.c_contiguous and train.labels.dtype == np.int64
    assert len(test) == 7


def test_archive_and_extracted_folder_give_the_same_data(tmp_path):
    write_cifar10(tmp_path / "a", train=23, test=7)
    write_cifar10(tmp_path / "b", train=23, test=7, extracted=True)

    from_archive = Cifar10Dataset().load(tmp_path / "a", "train")
    from_folder = Cifar10Dataset().load(tmp_path / "b", "train")

    np.testing.assert_array_equal(from_archive.images, from_folder.images)
    np.testing.assert_array_equal(from_archive.labels, from_folder.labels)


def test_rows_of_colour_planes_become_nhwc_in_batch_name_order(tmp_path):
    folder = write_cifar10(tmp_path, train=5, test=1, extracted=True)
    image = np.zeros((32, 32, 3), np.uint8)
    image[0, 1] = (10, 20, 30)  # one pixel of row 0, column 1: red 10, green 20, blue 30
    rows = image.transpose(2, 0, 1).reshape(1, 3072)
    for number in range(1, 6):
        _replace_member(folder, f"data_batch_{number}", _batch(rows * number, [number]))

    data = Cifar10Dataset().load(tmp_path, "train")

    assert data.labels.tolist() == [1, 2, 3, 4, 5]
    assert data.images[2, 0, 1].tolist() == [30, 60, 90]
    assert data.images[2].sum() == 180


def test_class_names_come_from_batches_meta(tmp_path):
    folder = write_cifar10(tmp_path, train=5, test=5, extracted=True)
    names = [f"class {i}".encode() for i in range(10)]
    _replace_member(folder, "batches.meta", python2_pickle({b"label_names": names}))
    dataset = Cifar10Dataset()

    with pytest.warns(UserWarning, match="differ from the canonical"):
        dataset.load(tmp_path, "test")

    assert dataset.class_names == tuple(f"class {i}" for i in range(10))


def test_label_out_of_range_is_an_error_naming_the_file(tmp_path):
    folder = write_cifar10(tmp_path, train=5, test=2, extracted=True)
    _replace_member(folder, "test_batch", _batch(np.zeros((2, 3072), np.uint8), [3, 10]))

    with pytest.raises(DataError, match="label out of range: 10 at index 1") as error:
        Cifar10Dataset().load(tmp_path, "test")
    assert str(folder / "test_batch") in str(error.value)


def test_labels_and_images_of_different_counts_are_an_error_naming_the_file(tmp_path):
    folder = write_cifar10(tmp_path, train=5, test=2, extracted=True)
    _replace_member(folder, "test_batch", _batch(np.zeros((2, 3072), np.uint8), [3]))

    with pytest.raises(DataError, match="wrong count: 1 labels for 2 images") as error:
        Cifar10Dataset().load(tmp_path, "test")
    assert str(folder / "test_batch") in str(error.value)


def test_data_of_the_wrong_shape_is_refused(tmp_path):
    folder = write_cifar10(tmp_path, train=5, test=2, extracted=True)
    _replace_member(folder, "test_batch", _batch(np.zeros((2, 1024), np.uint8), [1, 2]))

    with pytest.raises(DataError, match=r"expected a uint8 array of shape \(N, 3072\)"):
        Cifar10Dataset().load(tmp_path, "test")


def test_truncated_archive_is_an_error_naming_it(tmp_path):
    archive = write_cifar10(tmp_path, train=200, test=50)
    archive.write_bytes(archive.read_bytes()[:-500])

    with pytest.raises(DataError, match="truncated") as error:
        Cifar10Dataset().load(tmp_path, "train")
    assert str(archive) in str(error.value)


def test_archive_missing_a_batch_is_an_error_naming_it(tmp_path):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo("cifar-10-batches-py/test_batch")
        payload = _batch(np.zeros((1, 3072), np.uint8), [0])
        info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload))
    (tmp_path / "cifar-10-python.tar.gz").write_bytes(gzip.compress(buffer.getvalue()))

    with pytest.raises(DataError, match=r"lacks cifar-10-batches-py/batches\.meta"):
        Cifar10Dataset().load(tmp_path, "test")


def test_a_pickle_naming_another_global_is_refused_naming_file_and_global(tmp_path):
    folder = write_cifar10(tmp_path, train=5, test=2, extracted=True)
    _replace_member(folder, "test_batch", b"cbuiltins\neval\n(S'1+1'\ntR.")

    with pytest.raises(UnsafePickleError, match=r"builtins\.eval") as error:
        Cifar10Dataset().load(tmp_path, "test")
    assert str(folder / "test_batch") in str(error.value)


def test_missing_data_error_says_where_and_how_to_provide_it(tmp_path):
    with pytest.raises(DataError) as error:
        Cifar10Dataset().load(tmp_path, "test")
    message = str(error.value)
    assert "cifar-10-python.tar.gz" in message and str(tmp_path) in message
    assert "harness data fetch cifar10" in message


def test_an_incomplete_extracted_folder_does_not_count_as_present(tmp_path):
    folder = write_cifar10(tmp_path, train=5, test=2, extracted=True)
    dataset = Cifar10Dataset()
    assert dataset.missing_files(tmp_path) == []

    (folder / "data_batch_3").unlink()

    assert [r.filename for r in dataset.missing_files(tmp_path)] == ["cifar-10-python.tar.gz"]
    with pytest.raises(DataError, match="lacks data_batch_3"):
        dataset.load(tmp_path, "train")


def test_an_extracted_batch_that_cannot_be_read_is_an_error_naming_it(tmp_path, monkeypatch):
    import errno
    from pathlib import Path

    folder = write_cifar10(tmp_path, train=5, test=2, extracted=True)
    unreadable = folder / "test_batch"
    read_bytes = Path.read_bytes

    def failing_read_bytes(path):
        if path == unreadable:
            raise OSError(errno.EIO, "Input/output error")
        return read_bytes(path)

    monkeypatch.setattr(Path, "read_bytes", failing_read_bytes)
    with pytest.raises(DataError, match=r"cannot read it \(Input/output error\)") as error:
        Cifar10Dataset().load(tmp_path, "test")
    assert str(unreadable) in str(error.value)


def test_an_archive_that_cannot_be_opened_is_not_called_truncated(tmp_path, monkeypatch):
    import errno

    write_cifar10(tmp_path, train=5, test=2)

    def refuse(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(tarfile, "open", refuse)
    with pytest.raises(DataError) as error:
        Cifar10Dataset().load(tmp_path, "test")
    message = str(error.value)
    assert "cifar-10-python.tar.gz: cannot read it (Permission denied)" in message
    assert "truncated" not in message and "delete" not in message
