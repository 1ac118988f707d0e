"""The restricted unpickler rebuilds numpy arrays and refuses every other global, unrun."""

import pickle

import numpy as np
import pytest

from harness.errors import DataError
from harness.safe_pickle import UnsafePickleError, safe_loads
from harness.synthetic import python2_pickle


class _RunsCommand:
    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        import os

        return (os.system, (self.command,))


def test_a_pickle_naming_os_system_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "pwned"
    crafted = python2_pickle({b"data": _RunsCommand(f"touch {marker}")})

    with pytest.raises(UnsafePickleError, match=r"refused to unpickle the global \w+\.system"):
        safe_loads(crafted, source="data_batch_1")

    assert not marker.exists()
    pickle.loads(crafted, encoding="bytes")  # the control: plain pickle does run it
    assert marker.exists()


@pytest.mark.parametrize(
    ("crafted", "global_name"),
    [
        (b'cbuiltins\nexec\n(S\'open("MARKER", "w")\'\ntR.', "builtins.exec"),
        (
            b"\x80\x04\x95\x00\x00\x00\x00\x00\x00\x00\x00\x8c\x08builtins\x8c\x04eval\x93.",
            "builtins.eval",
        ),
        (b"cnumpy\nload\n.", "numpy.load"),
    ],
    ids=["GLOBAL builtins.exec", "STACK_GLOBAL builtins.eval", "numpy.load"],
)
def test_any_global_outside_the_allow_list_is_refused_naming_it_and_the_file(crafted, global_name):
    with pytest.raises(UnsafePickleError) as error:
        safe_loads(crafted, source="/data/test_batch")
    assert str(error.value).startswith(
        f"/data/test_batch: refused to unpickle the global {global_name}"
    )


@pytest.mark.parametrize("dtype", [np.uint8, np.int64, np.float32])
def test_numpy_arrays_pickled_as_python_2_did_load(dtype):
    array = np.arange(12, dtype=dtype).reshape(3, 4)

    loaded = safe_loads(python2_pickle({b"data": array}), source="batch")

    np.testing.assert_array_equal(loaded[b"data"], array)
    assert loaded[b"data"].dtype == dtype


def test_numpy_2_spelling_of_the_array_rebuilder_is_allowed():
    data = pickle.dumps(np.arange(5, dtype=np.uint8), protocol=4)
    assert b"numpy._core.multiarray" in data

    np.testing.assert_array_equal(safe_loads(data, source="x"), np.arange(5))


def test_a_malformed_pickle_is_a_data_error_naming_the_file():
    with pytest.raises(DataError, match=r"^batches\.meta: not a valid pickle"):
        safe_loads(b"\x80\x02}q\x00(U", source="batches.meta")


def test_bytes_pickled_by_python_3_at_protocol_2_load():
    batch = {b"batch_label": b"training batch 1 of 5", b"data": np.arange(12, dtype=np.uint8)}
    data = pickle.dumps(batch, protocol=2)
    assert b"c_codecs\nencode\n" in data  # how Python 3 writes bytes at protocol 2

    loaded = safe_loads(data, source="data_batch_1")

    assert loaded[b"batch_label"] == b"training batch 1 of 5"
    np.testing.assert_array_equal(loaded[b"data"], batch[b"data"])


class _Encodes:
    """Pickles as a call of ``_codecs.encode`` with the given arguments."""

    def __init__(self, *args):
        self.args = args

    def __reduce__(self):
        import codecs

        return (codecs.encode, self.args)


@pytest.mark.parametrize(
    "args",
    [("abc", "rot13"), ("abc", "hex"), (b"abc", "latin1"), ("abc",), ("abc", "latin1", "strict")],
    ids=["rot13", "another-codec", "bytes", "one-argument", "three-arguments"],
)
def test_codecs_encode_is_refused_for_anything_but_text_to_latin1(args):
    crafted = pickle.dumps(_Encodes(*args), protocol=2)
    assert b"c_codecs\nencode\n" in crafted

    with pytest.raises(UnsafePickleError, match=r"^batch: refused _codecs\.encode\("):
        safe_loads(crafted, source="batch")


def test_a_cifar_archive_re_pickled_by_python_3_loads_as_the_original(tmp_path):
    import io
    import tarfile

    from harness.synthetic import write_cifar10
    from harness_cifar10.dataset import Cifar10Dataset

    original = write_cifar10(tmp_path / "original", train=10, test=4)
    repickled = tmp_path / "repickled" / original.name
    repickled.parent.mkdir()
    with tarfile.open(original) as source, tarfile.open(repickled, "w:gz") as target:
        for member in source.getmembers():
            payload = source.extractfile(member).read() if member.isfile() else None
            if payload is not None and not member.name.endswith(".html"):
                # a trusted file of our own: plain pickle is fine here
                payload = pickle.dumps(pickle.loads(payload, encoding="bytes"), protocol=2)
                assert b"c_codecs\nencode\n" in payload
                member.size = len(payload)
            target.addfile(member, io.BytesIO(payload) if payload is not None else None)

    for split in ("train", "test"):
        expected = Cifar10Dataset().load(original.parent, split)
        loaded = Cifar10Dataset().load(repickled.parent, split)
        np.testing.assert_array_equal(loaded.images, expected.images)
        np.testing.assert_array_equal(loaded.labels, expected.labels)
