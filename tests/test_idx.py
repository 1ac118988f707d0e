"""IDX parsing: gzipped or plain, and every malformed file is an error naming it."""

import gzip
import hashlib

import numpy as np
import pytest

from harness.errors import DataError
from harness.idx import read_idx, write_idx


@pytest.mark.parametrize("compress", [True, False])
def test_round_trips_uint8_images_gzipped_or_plain(tmp_path, compress):
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    path = write_idx(tmp_path / "images", images, compress=compress)

    content = read_idx(path, expected_type=0x08, expected_ndim=3)

    np.testing.assert_array_equal(content.array, images)
    assert content.array.flags.c_contiguous and content.array.flags.writeable


def test_gzip_is_recognised_by_content_not_name(tmp_path):
    path = write_idx(
        tmp_path / "labels-without-gz-suffix", np.arange(5, dtype=np.uint8), compress=True
    )

    np.testing.assert_array_equal(read_idx(path).array, np.arange(5))


def test_content_md5_is_of_the_uncompressed_file_whatever_the_wrapping(tmp_path):
    labels = np.arange(10, dtype=np.uint8)
    plain = write_idx(tmp_path / "plain", labels)
    rewrapped = tmp_path / "rewrapped.gz"
    rewrapped.write_bytes(gzip.compress(plain.read_bytes(), compresslevel=1, mtime=12345))

    expected = f"md5:{hashlib.md5(plain.read_bytes()).hexdigest()}"
    assert read_idx(plain).content_md5 == expected
    assert read_idx(rewrapped).content_md5 == expected


def test_big_endian_item_types_come_back_native(tmp_path):
    values = np.array([[1, -2], [300000, 4]], dtype=np.int32)
    content = read_idx(write_idx(tmp_path / "ints", values))

    assert content.array.dtype == np.dtype(np.int32)
    np.testing.assert_array_equal(content.array, values)


def test_truncated_gzip_is_an_error_naming_the_file(tmp_path):
    path = write_idx(tmp_path / "train-images.gz", np.zeros((50, 28, 28), np.uint8), compress=True)
    path.write_bytes(path.read_bytes()[:-20])

    with pytest.raises(DataError, match="truncated gzip") as error:
        read_idx(path)
    assert str(path) in str(error.value)


def test_truncated_payload_is_an_error_not_a_short_array(tmp_path):
    path = write_idx(tmp_path / "images", np.zeros((4, 2, 2), np.uint8))
    path.write_bytes(path.read_bytes()[:-3])

    with pytest.raises(DataError, match=r"truncated: the header declares 4x2x2") as error:
        read_idx(path)
    assert str(path) in str(error.value)


def test_truncated_header_is_an_error(tmp_path):
    path = tmp_path / "labels"
    path.write_bytes(bytes([0, 0, 8, 1, 0, 0]))

    with pytest.raises(DataError, match="truncated: ended after 2 of the 4 bytes"):
        read_idx(path)


def test_wrong_magic_is_an_error_naming_the_file(tmp_path):
    path = tmp_path / "not-idx"
    path.write_bytes(b"PK\x03\x04" + bytes(100))

    with pytest.raises(DataError, match="not an IDX file: magic number is 504b0304") as error:
        read_idx(path)
    assert str(path) in str(error.value)


def test_trailing_bytes_are_an_error(tmp_path):
    path = write_idx(tmp_path / "labels", np.arange(3, dtype=np.uint8))
    path.write_bytes(path.read_bytes() + b"\x00")

    with pytest.raises(DataError, match="more bytes follow"):
        read_idx(path)


def test_a_valid_file_of_the_wrong_kind_is_refused(tmp_path):
    labels = write_idx(tmp_path / "labels", np.arange(3, dtype=np.uint8))
    floats = write_idx(tmp_path / "floats", np.zeros((2, 2, 2), np.float32))

    with pytest.raises(DataError, match="has 1 dimensions, expected 3"):
        read_idx(labels, expected_ndim=3)
    with pytest.raises(DataError, match="item type is 0x0d"):
        read_idx(floats, expected_type=0x08)


def test_missing_file_is_an_error_naming_it(tmp_path):
    with pytest.raises(DataError, match="file not found") as error:
        read_idx(tmp_path / "absent")
    assert "absent" in str(error.value)


def test_a_path_that_cannot_be_read_is_an_error_naming_it(tmp_path):
    folder = tmp_path / "train-images-idx3-ubyte"
    folder.mkdir()
    with pytest.raises(DataError, match=r"cannot read it .*; expected a readable IDX") as error:
        read_idx(folder)
    assert str(folder) in str(error.value)


@pytest.mark.parametrize("compress", [False, True])
def test_an_io_error_while_reading_is_an_error_naming_the_file(tmp_path, monkeypatch, compress):
    import errno

    from harness import idx

    path = write_idx(tmp_path / "images", np.zeros((2, 3, 3), np.uint8), compress=compress)

    def failing_read(*args, **kwargs):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(idx, "_read_into", failing_read)
    with pytest.raises(DataError, match=r"cannot read it \(Input/output error\)") as error:
        read_idx(path)
    assert str(path) in str(error.value)
