"""Every outcome of a cell becomes a record: ok, failed, timeout, crashed, unavailable.

The test backends are numpy-only (no TensorFlow), so each worker process starts in a second.
They live in a throwaway distribution on PYTHONPATH, so the CHILD process discovers them through
its entry points exactly as it discovers real plugins.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from harness.api import TrainedModel
from harness.latency import LatencyStats
from harness.lifetime import RUNNER_PID_VARIABLE
from harness.suite import LatencyConfig
from harness.worker import (
    CellSpec,
    describe_fault,
    gpu_memory_bytes,
    run_cell,
    run_cell_subprocess,
)

TEST_BACKENDS = '''
import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from harness import hookimpl
from harness.api import Backend, Predictor
from harness.errors import DeviceUnavailable


class PixelPredictor(Predictor):
    """Logits are the first ten pixels: deterministic, so the test can compute them too."""

    def predict(self, batch):
        return batch.reshape(len(batch), -1)[:, :10].astype(np.float32)

    def describe(self):
        return {"inference_path": "numpy slice"}


class AbortingPredictor(Predictor):
    def predict(self, batch):
        os.abort()


class LibraryAbortingPredictor(Predictor):
    def predict(self, batch):
        with contextlib.ExitStack() as stack:
            stack.callback(os.abort)  # the innermost Python frame of the fault is contextlib's
        return batch


class ReshapingPredictor(Predictor):
    def predict(self, batch):
        return np.reshape(batch, (7, 7))  # numpy raises, in frames of its own


class PixelBackend(Backend):
    name = "pixels"

    def prepare(self, model, device, options):
        return PixelPredictor()


class AbortingBackend(Backend):
    name = "aborting"

    def prepare(self, model, device, options):
        return AbortingPredictor()


class LibraryAbortingBackend(Backend):
    name = "aborting-in-library"

    def prepare(self, model, device, options):
        return LibraryAbortingPredictor()


class ReshapingBackend(Backend):
    name = "reshaping"

    def prepare(self, model, device, options):
        return ReshapingPredictor()


class HoggingBackend(Backend):
    """Grows to 600 MiB in steps of 20 MiB, then measures as ``pixels`` does."""

    name = "hogging"

    def prepare(self, model, device, options):
        held = []
        for _ in range(30):
            held.append(np.ones(20 * 2**20, dtype=np.uint8))
            time.sleep(0.02)
        return PixelPredictor()


class OomKilledBackend(Backend):
    """Holds 220 MiB, then dies by SIGKILL as the system's out-of-memory killer would kill it."""

    name = "oom-killed"

    def prepare(self, model, device, options):
        held = np.ones(220 * 2**20, dtype=np.uint8)
        time.sleep(0.5)
        os.kill(os.getpid(), signal.SIGKILL)
        return held


class SleepingBackend(Backend):
    name = "sleeping"

    def prepare(self, model, device, options):
        time.sleep(600)


class ForkingBackend(Backend):
    """Starts a process it never stops, and says its pid in the file ``options["pid_file"]``."""

    name = "forking"

    def prepare(self, model, device, options):
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
        Path(options["pid_file"]).write_text(str(child.pid))
        return PixelPredictor()


class RaisingBackend(Backend):
    name = "raising"

    def prepare(self, model, device, options):
        raise RuntimeError("the backend exploded")


class NoDeviceBackend(Backend):
    name = "nodevice"

    def prepare(self, model, device, options):
        raise DeviceUnavailable("no frobnicator on this machine")


@hookimpl
def register_backends(register):
    backends = (
        PixelBackend,
        AbortingBackend,
        SleepingBackend,
        ForkingBackend,
        RaisingBackend,
        NoDeviceBackend,
        LibraryAbortingBackend,
        ReshapingBackend,
        HoggingBackend,
        OomKilledBackend,
    )
    for backend in backends:
        register(backend())
'''

LATENCY = LatencyConfig(
    warmup_iterations=2,
    warmup_seconds=0.0,
    min_iterations=5,
    min_seconds=0.0,
    max_iterations=100,
    max_seconds=5.0,
)


def pixel_logits(images: np.ndarray) -> np.ndarray:
    return images.reshape(len(images), -1)[:, :10].astype(np.float32)


@pytest.fixture
def eval_data(tmp_path: Path) -> tuple[Path, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, size=(40, 4, 4, 1), dtype=np.uint8)
    labels = rng.integers(0, 10, size=40).astype(np.int64)
    path = tmp_path / "eval.npz"
    np.savez(path, images=images, labels=labels, reference_logits=pixel_logits(images))
    return path, images, labels


@pytest.fixture
def test_backends(make_distribution: Callable[..., Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """The test backends, visible to this process and to worker processes, and nothing else."""
    site = make_distribution("harness-testbackends", "harness_testbackends", TEST_BACKENDS)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv("HARNESS_PLUGINS", "harness_testbackends")


def spec_for(backend: str, eval_path: Path, **changes: Any) -> CellSpec:
    trained = TrainedModel(
        dataset="tiny",
        model="none",
        variant="plain",
        keras_path=eval_path.parent / "absent.keras",
        artifact_dir=eval_path.parent / "artifacts",
        cache_key="k",
    )
    values: dict[str, Any] = dict(
        dataset="tiny",
        model="none",
        variant="plain",
        backend=backend,
        device="cpu",
        trained=trained,
        eval_path=eval_path,
        batch_sizes=(1, 3),
        latency=LATENCY,
        seed=0,
    )
    values.update(changes)
    return CellSpec(**values)


@pytest.mark.usefixtures("test_backends")
def test_an_ok_cell_has_accuracy_parity_latency_and_what_ran(eval_data) -> None:
    eval_path, images, labels = eval_data
    record = run_cell(spec_for("pixels", eval_path))
    assert record["status"] == "ok", record["error"]
    assert record["error"] is None
    expected_accuracy = float(np.mean(pixel_logits(images).argmax(axis=1) == labels))
    assert record["accuracy"] == pytest.approx(expected_accuracy)
    assert record["num_eval"] == 40
    assert record["parity_top1_agreement"] == 1.0
    assert record["parity_max_abs_diff"] == 0.0
    assert record["parity_ok"] is True
    assert record["prepare_s"] >= 0 and record["first_inference_ms"] > 0
    assert record["peak_rss_bytes"] > 0
    assert record["describe"] == {"inference_path": "numpy slice"}
    assert set(record["phases"]) == {"prepare", "accuracy", "latency"}
    assert [b["batch_size"] for b in record["batches"]] == [1, 3]
    for batch in record["batches"]:
        assert len(batch["samples_ns"]) == batch["stats"]["iterations"] >= 5
        assert set(batch["stats"]) == set(LatencyStats.__dataclass_fields__)


@pytest.mark.usefixtures("test_backends")
def test_logits_off_the_reference_are_flagged(eval_data, tmp_path: Path) -> None:
    _, images, labels = eval_data
    shifted = pixel_logits(images)
    shifted[0] += np.float32(0.01)
    other = tmp_path / "shifted.npz"
    np.savez(other, images=images, labels=labels, reference_logits=shifted)
    record = run_cell(spec_for("pixels", other))
    assert record["status"] == "ok"
    assert record["parity_max_abs_diff"] == pytest.approx(0.01, rel=1e-3)
    assert record["parity_ok"] is False


@pytest.mark.usefixtures("test_backends")
def test_a_backend_that_raises_gives_a_failed_cell_naming_the_error(eval_data) -> None:
    record = run_cell(spec_for("raising", eval_data[0]))
    assert record["status"] == "failed"
    assert record["error"].startswith("RuntimeError: the backend exploded (at ")
    assert "in prepare" in record["error"]
    assert record["batches"] == []


def _line_of(text: str) -> int:
    """The line of the test backends' module that holds ``text``."""
    (number,) = [n for n, line in enumerate(TEST_BACKENDS.splitlines(), 1) if text in line]
    return number


@pytest.mark.usefixtures("test_backends")
def test_an_error_raised_inside_a_library_names_the_plugins_line_first(eval_data) -> None:
    record = run_cell(spec_for("reshaping", eval_data[0]))
    assert record["status"] == "failed"
    first_line = record["error"].splitlines()[0]
    assert first_line.startswith("ValueError: cannot reshape array")
    line = _line_of("np.reshape(batch, (7, 7))")
    assert f"harness_testbackends.py:{line} in predict)" in first_line
    assert "numpy" not in first_line


@pytest.mark.usefixtures("test_backends")
def test_a_missing_device_gives_an_unavailable_cell_with_the_reason(eval_data) -> None:
    record = run_cell(spec_for("nodevice", eval_data[0]))
    assert record["status"] == "unavailable"
    assert record["error"] == "no frobnicator on this machine"
    assert record["accuracy"] is None and record["batches"] == []


@pytest.mark.usefixtures("test_backends")
def test_an_unknown_backend_is_a_failed_cell(eval_data) -> None:
    record = run_cell(spec_for("nonesuch", eval_data[0]))
    assert record["status"] == "failed"
    assert "unknown backend 'nonesuch'" in record["error"]


def test_a_spec_survives_its_json_round_trip(eval_data) -> None:
    spec = spec_for("pixels", eval_data[0], backend_options={"intra_op_threads": 2})
    assert CellSpec.from_json(spec.to_json()) == spec


@pytest.mark.slow
@pytest.mark.usefixtures("test_backends")
def test_a_crash_and_a_hang_become_rows_while_the_other_cells_finish(
    eval_data, tmp_path: Path
) -> None:
    eval_path = eval_data[0]
    work = tmp_path / "work"
    records = [
        run_cell_subprocess(spec_for(backend, eval_path), timeout_s=8.0, work_dir=work)
        for backend in ("aborting", "pixels", "raising")
    ]
    records.append(
        run_cell_subprocess(spec_for("sleeping", eval_path), timeout_s=1.5, work_dir=work)
    )
    records.append(run_cell_subprocess(spec_for("nodevice", eval_path), 8.0, work))
    statuses = {r["backend"]: r["status"] for r in records}
    assert statuses == {
        "aborting": "crashed",
        "pixels": "ok",
        "raising": "failed",
        "sleeping": "timeout",
        "nodevice": "unavailable",
    }
    crashed, ok, _, timed_out, _ = records
    assert "signal SIGABRT" in crashed["error"]
    assert "predict" in crashed["error"]  # faulthandler's traceback, from the worker's log
    assert ok["parity_ok"] is True and len(ok["batches"]) == 2
    assert "timeout of 1.5 s" in timed_out["error"]
    assert 1.5 <= timed_out["worker_seconds"] < 8.0
    for record in records:
        assert record["type"] == "cell"
        assert record["worker_seconds"] is not None


FAULTHANDLER_LOG = """\
loading the model
Fatal Python error: Segmentation fault

Thread 0x00007f0000000001 (most recent call first):
  File "/usr/lib/python3.11/threading.py", line 324 in wait

Current thread 0x00007f0000000000 (most recent call first):
  File "/venv/site-packages/numpy/_core/fromnumeric.py", line 57 in _wrapfunc
  File "/plugins/harness_fancy/backend.py", line 41 in predict
  File "{harness}/worker.py", line 210 in _measure_predictor
  File "{harness}/worker.py", line 150 in run_cell
  File "<frozen runpy>", line 88 in _run_code

Extension modules: numpy._core._multiarray_umath, {many} (total: 177)
"""

TRACEBACK_LOG = """\
Traceback (most recent call last):
  File "<frozen runpy>", line 198, in _run_module_as_main
  File "{harness}/worker.py", line 150, in run_cell
    _measure_predictor(predictor, spec, images, labels, reference, record)
  File "/plugins/harness_fancy/backend.py", line 12, in predict
    raise KeyboardInterrupt("stop")
    ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^
KeyboardInterrupt: stop
"""


@pytest.mark.parametrize(
    ("log", "root", "expected"),
    [
        (
            FAULTHANDLER_LOG,
            Path("/plugins/harness_fancy"),
            "Fatal Python error: Segmentation fault "
            "(at /plugins/harness_fancy/backend.py:41 in predict)",
        ),
        (  # the plugin unknown: the innermost frame outside the harness
            FAULTHANDLER_LOG,
            None,
            "Fatal Python error: Segmentation fault (at "
            "/venv/site-packages/numpy/_core/fromnumeric.py:57 in _wrapfunc)",
        ),
        (
            TRACEBACK_LOG,
            Path("/plugins/harness_fancy"),
            "KeyboardInterrupt: stop (at /plugins/harness_fancy/backend.py:12 in predict)",
        ),
        ("harness: parent pid 1 is gone; exiting\n", None, None),
    ],
    ids=["faulthandler", "faulthandler-no-plugin", "traceback", "neither"],
)
def test_a_dead_workers_log_gives_its_fault_and_the_frame_to_blame(log, root, expected) -> None:
    from harness.worker import HARNESS_DIR

    text = log.format(harness=HARNESS_DIR, many=", ".join(f"m{i}" for i in range(176)))
    assert describe_fault(text, root) == expected


@pytest.mark.slow
@pytest.mark.usefixtures("test_backends")
def test_a_fatal_signal_in_a_library_leads_the_crash_error_with_the_plugins_line(
    eval_data, tmp_path: Path
) -> None:
    spec = spec_for("aborting-in-library", eval_data[0])
    record = run_cell_subprocess(spec, timeout_s=30.0, work_dir=tmp_path / "work")
    assert record["status"] == "crashed"
    first_line, second_line, *_ = record["error"].splitlines()
    line = _line_of("with contextlib.ExitStack() as stack")  # where __exit__ is called
    assert first_line.startswith("worker killed by signal SIGABRT: Fatal Python error: Aborted")
    assert first_line.endswith(f"harness_testbackends.py:{line} in predict)")
    assert second_line.startswith("log ") and second_line.endswith(" ends with:")
    assert "Extension modules" not in record["error"]


@pytest.mark.slow
@pytest.mark.usefixtures("test_backends")
def test_a_worker_over_its_memory_limit_is_an_oom_cell_and_the_others_are_kept(
    eval_data, tmp_path: Path
) -> None:
    limit = 300 * 2**20
    work = tmp_path / "work"
    records = [
        run_cell_subprocess(spec_for(backend, eval_data[0]), 60.0, work, limit)
        for backend in ("pixels", "hogging", "pixels")
    ]
    assert [r["status"] for r in records] == ["ok", "oom", "ok"]
    before, oom, after = records
    assert len(before["batches"]) == len(after["batches"]) == 2
    assert before["accuracy"] == after["accuracy"] is not None
    assert 300 * 2**20 < oom["peak_rss_bytes"] < 600 * 2**20
    assert oom["error"].startswith("worker killed at its memory limit of 300 MiB: it held ")
    assert f"it held {oom['peak_rss_bytes'] / 2**20:,.0f} MiB resident" in oom["error"]
    assert (
        "raise the limit with worker_memory_limit_mb in the suite or --memory-limit"
        in (oom["error"])
    )
    assert oom["batches"] == [] and oom["worker_seconds"] < 30


@pytest.mark.slow
@pytest.mark.usefixtures("test_backends")
def test_a_worker_sigkilled_from_outside_holding_much_memory_blames_memory(
    eval_data, tmp_path: Path
) -> None:
    spec = spec_for("oom-killed", eval_data[0])
    record = run_cell_subprocess(spec, 60.0, tmp_path / "work", 400 * 2**20)
    assert record["status"] == "crashed"
    first_line = record["error"].splitlines()[0]
    assert first_line.startswith("worker killed by signal SIGKILL from outside, holding up to ")
    assert "of its limit of 400 MiB): memory is the likely cause" in first_line


def test_a_workers_peak_memory_is_its_own_not_its_parents():
    import subprocess
    import sys

    import numpy as np

    ballast = np.ones(400 * 2**20, dtype=np.uint8)  # the parent's peak: at least 400 MiB
    code = "from harness.worker import peak_rss_bytes; print(peak_rss_bytes())"
    child = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert ballast.sum() == ballast.size
    assert 0 < int(child.stdout) < 200 * 2**20


class FakeNvml:
    """pynvml's calls the worker makes, on one GPU that two processes use."""

    class NVMLError(Exception):
        pass

    def __init__(self, processes: list[tuple[int, int | None]], fail_init: bool = False) -> None:
        self._processes = processes
        self._fail_init = fail_init
        self.shut_down = False

    def nvmlInit(self) -> None:
        if self._fail_init:
            raise self.NVMLError("Driver Not Loaded")

    def nvmlShutdown(self) -> None:
        self.shut_down = True

    def nvmlDeviceGetCount(self) -> int:
        return 1

    def nvmlDeviceGetHandleByIndex(self, index: int) -> str:
        return f"gpu{index}"

    def nvmlDeviceGetComputeRunningProcesses(self, handle: str) -> list[Any]:
        from types import SimpleNamespace

        return [SimpleNamespace(pid=pid, usedGpuMemory=used) for pid, used in self._processes]


@pytest.mark.usefixtures("test_backends")
def test_a_gpu_cell_records_the_gpu_memory_its_own_process_holds(eval_data, monkeypatch) -> None:
    nvml = FakeNvml([(os.getpid(), 700_000_000), (os.getpid() + 1, 5_000_000_000)])
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    on_gpu = run_cell(spec_for("pixels", eval_data[0], device="gpu"))
    on_cpu = run_cell(spec_for("pixels", eval_data[0]))
    assert on_gpu["status"] == "ok", on_gpu["error"]
    assert on_gpu["peak_gpu_memory_bytes"] == 700_000_000
    assert on_cpu["peak_gpu_memory_bytes"] is None
    assert nvml.shut_down


@pytest.mark.parametrize(
    "nvml",
    [
        None,  # pynvml not installed
        FakeNvml([(os.getpid(), 1)], fail_init=True),  # no driver
        FakeNvml([(1, 700_000_000)]),  # this process is not among NVML's (a PID namespace)
        FakeNvml([(os.getpid(), None)]),  # NVML cannot see the figure
    ],
    ids=["no-pynvml", "no-driver", "not-listed", "not-available"],
)
def test_gpu_memory_is_unknown_never_zero_when_nvml_cannot_say(nvml, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", nvml)  # None makes the import fail
    assert gpu_memory_bytes() is None


RUNNER_LIKE = """
import json
import sys
from pathlib import Path

from harness.worker import CellSpec, run_cell_subprocess

spec = CellSpec.from_json(json.loads(Path(sys.argv[1]).read_text()))
run_cell_subprocess(spec, 600.0, Path(sys.argv[2]))
"""

CLI_LIKE = """
import sys
import types

from harness import cli

command = types.ModuleType("hang")
command.add_arguments = lambda parser: parser.add_argument("argv", nargs="*")
command.run = lambda args: exec(RUNNER_LIKE, {"__name__": "runner", "sys": sys})
sys.modules["hang"] = command
cli.COMMANDS["hang"] = ("hang", "measure a cell whose worker hangs")
sys.exit(cli.main(["hang", *sys.argv[1:]]))
"""
"""A ``harness`` command line with one more command: ``RUNNER_LIKE`` (prepended to it)."""


def _gone(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _wait_until(condition: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return condition()


def _kill_group_if_alive(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


def _start_with_a_hanging_worker(
    code: str, eval_path: Path, tmp_path: Path
) -> tuple[subprocess.Popen[str], int]:
    """Run ``code`` measuring a cell whose worker hangs; returns the process and the worker's pid
    once the worker runs."""
    import psutil

    spec_path = tmp_path / "spec.json"
    spec_path.write_text(json.dumps(spec_for("sleeping", eval_path).to_json()))
    argv = [sys.executable, "-c", code, str(spec_path), str(tmp_path / "work")]
    parent = subprocess.Popen(argv, stderr=subprocess.PIPE, text=True)
    workers: list[psutil.Process] = []

    def worker_started() -> bool:
        workers[:] = psutil.Process(parent.pid).children()
        return bool(workers)

    if not _wait_until(worker_started, 60):
        parent.kill()
        pytest.fail(f"no worker started: {parent.communicate()[1]}")
    time.sleep(2)  # let it get past its start (killed sooner, it must go as well)
    return parent, workers[0].pid


@pytest.mark.slow
@pytest.mark.usefixtures("test_backends")
def test_a_worker_dies_with_a_runner_killed_by_sigkill(eval_data, tmp_path: Path) -> None:
    runner, worker = _start_with_a_hanging_worker(RUNNER_LIKE, eval_data[0], tmp_path)
    try:
        runner.kill()
        runner.wait()
        assert _wait_until(lambda: _gone(worker), 15), "the worker outlived its runner"
    finally:
        _kill_group_if_alive(worker)


@pytest.mark.slow
@pytest.mark.usefixtures("test_backends")
def test_sigterm_stops_a_command_like_ctrl_c_and_kills_its_worker(
    eval_data, tmp_path: Path
) -> None:
    code = f"RUNNER_LIKE = {RUNNER_LIKE!r}\n{CLI_LIKE}"
    command, worker = _start_with_a_hanging_worker(code, eval_data[0], tmp_path)
    try:
        command.send_signal(signal.SIGTERM)
        _, stderr = command.communicate(timeout=30)
        assert command.returncode == 128 + signal.SIGTERM
        assert "harness hang: stopped by SIGTERM" in stderr
        assert _gone(worker)
    finally:
        _kill_group_if_alive(worker)


@pytest.mark.slow
@pytest.mark.usefixtures("test_backends")
def test_a_process_a_plugin_left_behind_goes_when_its_worker_exits(
    eval_data, tmp_path: Path
) -> None:
    pid_file = tmp_path / "leftover.pid"
    spec = spec_for("forking", eval_data[0], backend_options={"pid_file": str(pid_file)})
    record = run_cell_subprocess(spec, timeout_s=60.0, work_dir=tmp_path / "work")
    assert record["status"] == "ok", record["error"]
    leftover = int(pid_file.read_text())
    try:
        assert _wait_until(lambda: _gone(leftover), 5), "the plugin's process outlived its worker"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(leftover, signal.SIGKILL)


def test_a_worker_whose_runner_died_before_it_started_exits_at_once(tmp_path: Path) -> None:
    code = "from harness.lifetime import die_with_parent; die_with_parent(); print('still here')"
    gone_runner = {RUNNER_PID_VARIABLE: "999999999"}  # not this child's parent
    child = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=os.environ | gone_runner,
        timeout=60,
    )
    assert child.returncode == 1
    assert "parent pid 999999999 is gone" in child.stderr
    assert "still here" not in child.stdout


def test_an_oom_cell_fails_the_run_as_a_crash_would() -> None:
    from harness.runner import RunOutcome

    outcome = RunOutcome(Path("run"))
    outcome.cells.update({"ok": 3, "oom": 1, "unavailable": 2})
    assert outcome.failed == 1
