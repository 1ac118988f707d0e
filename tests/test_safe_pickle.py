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
