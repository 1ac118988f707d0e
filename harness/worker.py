"""Runs one cell (one backend x device on one trained model) in its own process, with a timeout.

A backend that crashes the interpreter, hangs or raises costs one cell, never the run: the
parent turns every outcome into a journal ``cell`` record with a status:

- ``ok``: measured; ``failed``: the backend raised (the error names the type, message and the
  plugin's frame); ``timeout``: the parent killed the worker after ``timeout_s``; ``oom``: the
  parent killed the worker when its resident memory (with its children's) passed the limit;
  ``crashed``: the worker died (signal or exit code, the fault and its frame from the log, then
  the log's tail); ``unavailable``: the backend raised
  :class:`harness.errors.DeviceUnavailable` (the reason is the error).

An error's first line names the fault and where it happened: the innermost frame of the
backend's own plugin, else the innermost outside the harness, never the harness's frames
around the call.

A worker never outlives its runner: it asks Linux for SIGKILL when the runner dies (a watchdog
thread elsewhere), and the runner kills the worker's process group when the worker exits, times
out or the runner is stopped, so a process a plugin started goes too.

Child entry point: ``python -m harness.worker SPEC.json RESULT.json``.
"""

from __future__ import annotations

import contextlib
import faulthandler
import json
import os
import re
import signal
import subprocess
import sys
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from harness.api import Predictor, TrainedModel
from harness.errors import DeviceUnavailable
from harness.latency import LatencyStats, measure
from harness.lifetime import RUNNER_PID_VARIABLE, die_with_parent
from harness.memory import (
    MIB,
    ResidentMemory,
    describe_limit,
    limit_error,
    machine_memory_bytes,
)
from harness.records import BatchRecord, CellRecord
from harness.suite import LatencyConfig, ServingConfig

EVAL_CHUNK = 256
"""Images per call when scoring the whole evaluation set."""
STDERR_TAIL_CHARS = 4000
POLL_INTERVAL_S = 0.05
"""How often the runner looks at a running worker's memory and clock."""
LIKELY_OOM_FRACTION = 0.5
"""A worker SIGKILLed from outside while holding at least this share of its memory limit was
most likely the out-of-memory killer's victim."""
HARNESS_DIR = Path(__file__).resolve().parent
FRAME_LINE = re.compile(r'^\s+File "(?P<file>[^"]*)", line (?P<line>\d+),? in (?P<name>\S.*)$')
"""A frame in a traceback (``, in f``) or in faulthandler's dump (`` in f``)."""


@dataclass(frozen=True)
class CellSpec:
    """Everything a worker needs to measure one cell; travels to the child as JSON."""

    dataset: str
    model: str
    variant: str
    backend: str
    device: str
    trained: TrainedModel
    eval_path: Path
    """An .npz with ``images`` (uint8 NHWC), ``labels`` (int64) and ``reference_logits``
    (float32, the Keras reference model's logits on exactly those images)."""
    batch_sizes: tuple[int, ...]
    latency: LatencyConfig
    backend_options: dict[str, Any] = field(default_factory=dict)
    """This backend's own settings (the suite's ``backend_options[backend]``)."""
    seed: int = 0
    serving: ServingConfig = field(default_factory=ServingConfig)

    @property
    def label(self) -> str:
        return f"{self.dataset}-{self.model}-{self.variant}-{self.backend}-{self.device}"

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["trained"]["keras_path"] = str(self.trained.keras_path)
        data["trained"]["artifact_dir"] = str(self.trained.artifact_dir)
        data["eval_path"] = str(self.eval_path)
        data["batch_sizes"] = list(self.batch_sizes)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CellSpec:
        trained = dict(data["trained"])
        trained["keras_path"] = Path(trained["keras_path"])
        trained["artifact_dir"] = Path(trained["artifact_dir"])
        return cls(
            **{
                **data,
                "trained": TrainedModel(**trained),
                "eval_path": Path(data["eval_path"]),
                "batch_sizes": tuple(data["batch_sizes"]),
                "latency": LatencyConfig(**data["latency"]),
                "serving": ServingConfig.from_json(data.get("serving") or {}),
            }
        )


def empty_record(spec: CellSpec, status: str, error: str | None) -> CellRecord:
    """A cell record with nothing measured yet."""
    return CellRecord(
        dataset=spec.dataset,
        model=spec.model,
        variant=spec.variant,
        backend=spec.backend,
        device=spec.device,
        status=status,
        error=error,
    )


def run_cell(spec: CellSpec) -> dict[str, Any]:
    """Measure one cell in this process; every exception becomes the record's status. Returns
    the journal's cell record (:meth:`harness.records.CellRecord.to_dict`)."""
    from harness.plugins import get_registry

    started = time.perf_counter()
    record = empty_record(spec, "ok", None)
    plugin_root = None
    try:
        backend = get_registry().backend(spec.backend)
        plugin_root = plugin_root_of(backend)
        with np.load(spec.eval_path) as data:
            images = np.ascontiguousarray(data["images"])
            labels = data["labels"]
            reference = data["reference_logits"]
        before = time.perf_counter()
        try:
            predictor = backend.prepare(spec.trained, spec.device, spec.backend_options)
        except DeviceUnavailable as exc:
            record.status, record.error = "unavailable", str(exc)
            return _finished(record, started)
        record.prepare_s = record.phases["prepare"] = time.perf_counter() - before
        try:
            _measure_predictor(predictor, spec, images, labels, reference, record)
            if spec.serving.measures(spec.dataset, spec.variant):
                _measure_serving(predictor, spec, images, record)
            if spec.device != "cpu":
                record.peak_gpu_memory_bytes = gpu_memory_bytes()
        finally:
            predictor.close()
    except Exception as exc:
        record.status, record.error = "failed", describe_exception(exc, plugin_root)
        record.batches = []
    return _finished(record, started)


def _finished(record: CellRecord, started: float) -> dict[str, Any]:
    """The journal's record of a cell ending now, with the worker's memory and time."""
    record.peak_rss_bytes = peak_rss_bytes()
    record.worker_seconds = time.perf_counter() - started
    return record.to_dict()


def _measure_predictor(
    predictor: Predictor,
    spec: CellSpec,
    images: np.ndarray,
    labels: np.ndarray,
    reference: np.ndarray,
    record: CellRecord,
) -> None:
    """Accuracy, parity with the reference (judged by the backend's declared tolerance, which
    the record keeps), then latency per batch size."""
    from harness.plugins import get_registry

    before = time.perf_counter()
    predictor.predict(images[:1])
    record.first_inference_ms = (time.perf_counter() - before) * 1000

    before = time.perf_counter()
    logits = np.concatenate(
        [predictor.predict(images[i : i + EVAL_CHUNK]) for i in range(0, len(images), EVAL_CHUNK)]
    )
    if logits.shape != reference.shape:
        raise ValueError(
            f"backend {spec.backend!r} returned logits of shape {logits.shape} for "
            f"{len(images)} images; expected {reference.shape} like the Keras reference"
        )
    predicted = logits.argmax(axis=1)
    agreement = float(np.mean(predicted == reference.argmax(axis=1)))
    max_diff = float(np.max(np.abs(logits.astype(np.float64) - reference)))
    tolerance = get_registry().backend(spec.backend).parity
    record.accuracy = float(np.mean(predicted == labels))
    record.num_eval = len(labels)
    record.parity_top1_agreement = agreement
    record.parity_max_abs_diff = max_diff
    record.parity_ok = tolerance.holds(agreement, max_diff)
    record.parity_tolerance = tolerance
    record.phases["accuracy"] = time.perf_counter() - before

    before = time.perf_counter()
    order = np.random.default_rng(spec.seed).permutation(len(images))
    batches = []
    for batch_size in spec.batch_sizes:
        batch = np.ascontiguousarray(images[np.resize(order, batch_size)])
        samples = measure(lambda batch=batch: predictor.predict(batch), spec.latency)
        batches.append(
            BatchRecord(
                batch_size=batch_size,
                stats=LatencyStats.from_samples(samples, batch_size),
                samples_ns=samples.tolist(),
            )
        )
    record.phases["latency"] = time.perf_counter() - before
    record.describe = predictor.describe()
    record.batches = batches


def _measure_serving(
    predictor: Predictor, spec: CellSpec, images: np.ndarray, record: CellRecord
) -> None:
    """The Server and Offline scenarios (:mod:`harness.serving`) on the same predictor."""
    from harness.serving import measure_serving

    before = time.perf_counter()
    bound_ms = spec.serving.bound_for(spec.dataset, spec.variant, model=spec.model)
    record.serving = measure_serving(predictor, images, spec.serving, bound_ms, spec.seed)
    record.phases["serving"] = time.perf_counter() - before


def describe_exception(exc: BaseException, plugin_root: Path | None = None) -> str:
    """``Type: message (at file:line in function)``, the frame chosen by
    :func:`faulting_frame`; a message of several lines continues after that first line."""
    frames = [(f.filename, f.lineno or 0, f.name) for f in traceback.extract_tb(exc.__traceback__)]
    first, _, rest = str(exc).partition("\n")
    return f"{type(exc).__name__}: {first}{_at(frames[::-1], plugin_root)}" + (
        f"\n{rest}" if rest else ""
    )


def plugin_root_of(plugin_object: object) -> Path | None:
    """The folder of the top-level package that defines ``plugin_object``'s class (or its
    module file): frames there are the plugin's own."""
    top = type(plugin_object).__module__.partition(".")[0]
    filename = getattr(sys.modules.get(top), "__file__", None)
    if not filename:
        return None
    path = Path(filename).resolve()
    return path.parent if path.name == "__init__.py" else path


def faulting_frame(
    frames: list[tuple[str, int, str]], plugin_root: Path | None
) -> tuple[str, int, str] | None:
    """The frame to blame among ``frames`` (innermost first): the innermost in the plugin, else
    the innermost outside the harness (a library the harness called), else the innermost.

    A fault inside numpy called by a plugin is the plugin's line, not numpy's; the harness's
    frames around every call say nothing about the cell."""

    def under(filename: str, root: Path) -> bool:
        try:
            return Path(filename).resolve().is_relative_to(root)
        except (OSError, ValueError):
            return False

    candidates = [
        [f for f in frames if plugin_root is not None and under(f[0], plugin_root)],
        [f for f in frames if not under(f[0], HARNESS_DIR)],
        frames,
    ]
    return next((found[0] for found in candidates if found), None)


def _at(frames: list[tuple[str, int, str]], plugin_root: Path | None) -> str:
    frame = faulting_frame(frames, plugin_root)
    return f" (at {frame[0]}:{frame[1]} in {frame[2]})" if frame else ""


def describe_fault(log: str, plugin_root: Path | None) -> str | None:
    """The fault a dead worker's log records, with its frame: faulthandler's ``Fatal Python
    error`` (a signal) or the last Python traceback; None when the log holds neither."""
    lines = log.splitlines()
    fatal = [i for i, line in enumerate(lines) if line.startswith("Fatal Python error: ")]
    if fatal:
        start = fatal[-1]
        rest = lines[start + 1 :]
        current = [i for i, line in enumerate(rest) if line.startswith("Current thread ")]
        frames = _frames(rest[current[0] + 1 :] if current else rest)
        return f"{lines[start]}{_at(frames, plugin_root)}"
    tracebacks = [i for i, line in enumerate(lines) if line.startswith("Traceback (most recent")]
    if not tracebacks:
        return None
    body = lines[tracebacks[-1] + 1 :]
    raised = next((line for line in body if line and not line[0].isspace()), "")
    return f"{raised or 'a Python exception'}{_at(_frames(body)[::-1], plugin_root)}"


def _frames(lines: list[str]) -> list[tuple[str, int, str]]:
    """The frames of the first run of frame lines (source lines between them skipped)."""
    frames = []
    for line in lines:
        match = FRAME_LINE.match(line)
        if match:
            frames.append((match["file"], int(match["line"]), match["name"]))
        elif frames and not line.startswith("    "):
            break
    return frames


def peak_rss_bytes() -> int | None:
    """This process's peak resident memory, or None where the OS does not say.

    On Linux, ``VmHWM`` of this process's own address space: ``ru_maxrss`` would carry over the
    high-water mark of the runner that started the worker (it survives fork and exec), so every
    worker would report at least the runner's peak.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024  # kB
    except OSError:
        pass
    try:
        import resource
    except ImportError:  # Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # macOS: bytes; Linux: KiB


def gpu_memory_bytes() -> int | None:
    """GPU memory this process holds, summed over NVIDIA GPUs, or None where NVML cannot say.

    Read after the latency runs: TensorFlow's and ONNX Runtime's allocators keep what they took
    (memory growth, the BFC arena), so what the process holds then is its peak, CUDA context
    included. NVML is the one view both runtimes share. Inside a container whose PID namespace
    hides this process from NVML, the answer is None (unknown), never 0.
    """
    try:
        import pynvml
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return None
    try:
        used = [
            process.usedGpuMemory
            for index in range(pynvml.nvmlDeviceGetCount())
            for process in pynvml.nvmlDeviceGetComputeRunningProcesses(
                pynvml.nvmlDeviceGetHandleByIndex(index)
            )
            if process.pid == os.getpid() and process.usedGpuMemory is not None
        ]
    except pynvml.NVMLError:
        return None
    finally:
        pynvml.nvmlShutdown()
    return sum(used) if used else None


def run_cell_subprocess(
    spec: CellSpec, timeout_s: float, work_dir: Path, memory_limit_bytes: int | None = None
) -> dict[str, Any]:
    """Measure one cell in a fresh worker process; never raises for what happens inside it.

    The worker is killed when it runs past ``timeout_s`` or when it and the processes it
    started hold more than ``memory_limit_bytes`` resident (None: no limit)."""
    work_dir.mkdir(parents=True, exist_ok=True)
    spec_path = work_dir / f"{spec.label}.spec.json"
    result_path = work_dir / f"{spec.label}.result.json"
    log_path = work_dir / f"{spec.label}.log"
    spec_path.write_text(json.dumps(spec.to_json(), indent=1))
    result_path.unlink(missing_ok=True)
    command = [sys.executable, "-m", "harness.worker", str(spec_path), str(result_path)]
    env = os.environ | {RUNNER_PID_VARIABLE: str(os.getpid())}
    started = time.perf_counter()
    with log_path.open("wb") as log:
        # A session of its own, so killing its group takes anything it started, too.
        child = subprocess.Popen(command, stdout=log, stderr=log, env=env, start_new_session=True)
        memory = ResidentMemory(child.pid)
        try:
            ending = _watch(child, timeout_s, memory_limit_bytes, memory)
        except BaseException:  # Ctrl-C or SIGTERM in the parent: take the worker down with us
            _kill_group(child)
            raise
        _kill_group(child)  # what a plugin started and left running
    returncode = child.returncode
    if ending == "timeout":
        record = empty_record(
            spec, "timeout", f"worker killed after the cell's timeout of {timeout_s:g} s"
        )
    elif ending == "oom":
        assert memory_limit_bytes is not None
        record = empty_record(spec, "oom", limit_error(memory.peak, memory_limit_bytes))
        record.peak_rss_bytes = memory.peak
    elif returncode == 0 and result_path.is_file():
        return json.loads(result_path.read_text())
    else:
        how = _how_it_ended(returncode, result_path, memory.peak, memory_limit_bytes)
        log = log_path.read_text(errors="replace")
        fault = describe_fault(log, _backend_root(spec.backend))
        tail = EXTENSION_MODULES.sub("", log)[-STDERR_TAIL_CHARS:].strip()
        error = f"{how}{': ' + fault if fault else ''}\nlog {log_path} ends with:\n{tail}"
        record = empty_record(spec, "crashed", error)
    record.worker_seconds = time.perf_counter() - started
    return record.to_dict()


EXTENSION_MODULES = re.compile(r"^Extension modules: .*(\n|$)", re.MULTILINE)
"""faulthandler's list of loaded extension modules (hundreds with TensorFlow): it would fill
the log tail the error keeps and push the fault out."""


def _watch(
    child: subprocess.Popen[bytes],
    timeout_s: float,
    memory_limit_bytes: int | None,
    memory: ResidentMemory,
) -> str:
    """Wait for the worker, watching its clock and memory: ``exited``, or ``timeout`` or
    ``oom`` when it must be killed."""
    deadline = time.monotonic() + timeout_s
    while child.poll() is None:
        resident = memory.read()
        if memory_limit_bytes is not None and resident > memory_limit_bytes:
            return "oom"
        if time.monotonic() >= deadline:
            return "timeout"
        time.sleep(POLL_INTERVAL_S)
    return "exited"


def _how_it_ended(returncode: int, result_path: Path, peak: int, limit: int | None) -> str:
    if returncode == -signal.SIGKILL:  # not the harness's doing: it kills only on timeout, oom
        how = f"worker killed by signal SIGKILL from outside, holding up to {peak / MIB:,.0f} MiB"
        if limit is None:
            limit, of = machine_memory_bytes(), "of the machine's"
        else:
            of = "of its limit of"
        if peak >= LIKELY_OOM_FRACTION * limit:
            how += (
                f" ({peak / limit:.0%} {of} {describe_limit(limit)}): memory is the likely "
                "cause, the system's out-of-memory killer; lower the batch sizes, or the memory "
                "limit so that the harness stops such a cell first"
            )
        return how
    if returncode < 0:
        return f"worker killed by signal {signal.Signals(-returncode).name}"
    if returncode == 0:
        return f"worker exited without writing {result_path}"
    return f"worker exited with code {returncode}"


def _backend_root(name: str) -> Path | None:
    """The backend plugin's folder, to find its frames in a dead worker's log; None when the
    registry cannot say (the error is still written, blaming the innermost non-harness frame)."""
    from harness.plugins import get_registry

    try:
        return plugin_root_of(get_registry().backend(name))
    except Exception:
        return None


def _kill_group(child: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):  # the group may be empty by now
        os.killpg(child.pid, signal.SIGKILL)
    child.wait()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m harness.worker SPEC.json RESULT.json", file=sys.stderr)
        return 2
    die_with_parent()
    spec_path, result_path = Path(args[0]), Path(args[1])
    faulthandler.enable()  # a fatal signal leaves a Python traceback in the log
    record = run_cell(CellSpec.from_json(json.loads(spec_path.read_text())))
    partial = result_path.with_name(result_path.name + ".partial")
    partial.write_text(json.dumps(record))
    os.replace(partial, result_path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
