"""A long-lived worker that times short latency trials on request, so trials can be interleaved.

:mod:`harness.worker` measures one cell from start to end in one go. On a shared machine that
confounds the cell with the moment it ran: the machine drifts in phases of seconds to minutes.
This worker instead keeps its predictors alive and answers "time cell C at batch size N for S
seconds" from a coordinator, which interleaves short trials of many cells, sides and processes
in randomized order (Abedi & Brecht's randomized multiple interleaved trials), so that every
phase of the machine hits all of them alike.

Protocol: one JSON object per line. Requests arrive on stdin; replies leave on a private copy of
the original stdout, and file descriptor 1 is pointed at stderr (the log), so that a plugin's
``print`` cannot corrupt the protocol. Requests and their replies:

- ``{"op": "prepare", "cells": [CellSpec as JSON, ...]}``: load every cell's predictor and its
  batches; reply ``{"ok": true, "describe": {label: describe()}}``.
- ``{"op": "trial", "cell": label, "batch_size": N, "warmup_seconds": W, "seconds": S,
  "min_iterations": M}``: warm up for W seconds (at least 2 calls), then time calls until S
  seconds and M calls have passed; reply the trial's summary (:func:`summarize_trial`).
- ``{"op": "serving", "cell": label, "seed": S}``: the Server and Offline scenarios
  (:func:`harness.serving.measure_serving`) on the cell's predictor with its suite's
  ``[serving]`` settings and bound, as :mod:`harness.worker` runs them; reply ``{"ok": true,
  "serving": {"server": ..., "offline": ...}, "seconds": wall time}``. Only a cell the suite's
  ``[serving]`` selects keeps its images for it.
- ``{"op": "exit"}``: close the predictors and exit 0.

Any failure replies ``{"ok": false, "error": "..."}``; the coordinator decides what it costs.
Child entry point: ``python -m harness.trial_worker``.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import numpy as np

from harness.errors import HarnessError
from harness.latency import measure
from harness.lifetime import RUNNER_PID_VARIABLE
from harness.memory import ResidentMemory, limit_error
from harness.suite import LatencyConfig
from harness.worker import POLL_INTERVAL_S

TRIAL_QUANTILES = (10, 50, 90, 99)
"""The percentiles every trial reports (numpy's ``linear`` method, as the run reports)."""


class TrialWorkerError(HarnessError):
    """A trial worker died, timed out or could not prepare its cells."""


def summarize_trial(samples_ns: np.ndarray) -> dict[str, Any]:
    """What a coordinator needs of one trial: its size, mean and percentiles, in nanoseconds."""
    samples = np.asarray(samples_ns, dtype=np.float64)
    quantiles = np.percentile(samples, TRIAL_QUANTILES, method="linear")
    summary: dict[str, Any] = {
        "ok": True,
        "iterations": int(samples.size),
        "mean_ns": float(samples.mean()),
    }
    for percentile, value in zip(TRIAL_QUANTILES, quantiles, strict=True):
        summary[f"p{percentile}_ns"] = float(value)
    return summary


class _Server:
    """The worker's side: predictors by cell label, and the batches they are timed on."""

    def __init__(self) -> None:
        self.predictors: dict[str, Any] = {}
        self.batches: dict[tuple[str, int], np.ndarray] = {}
        self.serving_cells: dict[str, tuple[Any, np.ndarray]] = {}
        """Spec and images by label, of the cells the suite's ``[serving]`` selects."""

    def prepare(self, request: Mapping[str, Any]) -> dict[str, Any]:
        from harness.plugins import get_registry
        from harness.worker import CellSpec

        described = {}
        for data in request["cells"]:
            spec = CellSpec.from_json(data)
            backend = get_registry().backend(spec.backend)
            with np.load(spec.eval_path) as arrays:
                images = np.ascontiguousarray(arrays["images"])
            predictor = backend.prepare(spec.trained, spec.device, spec.backend_options)
            self.predictors[spec.label] = predictor
            order = np.random.default_rng(spec.seed).permutation(len(images))
            for batch_size in spec.batch_sizes:
                # The same images, in the same order, as harness.worker times.
                batch = np.ascontiguousarray(images[np.resize(order, batch_size)])
                self.batches[(spec.label, batch_size)] = batch
            if spec.serving.measures(spec.dataset, spec.variant):
                self.serving_cells[spec.label] = (spec, images)
            predictor.predict(self.batches[(spec.label, spec.batch_sizes[0])])
            described[spec.label] = predictor.describe()
        return {"ok": True, "describe": described}

    def trial(self, request: Mapping[str, Any]) -> dict[str, Any]:
        label, batch_size = request["cell"], int(request["batch_size"])
        predictor = self.predictors[label]
        batch = self.batches[(label, batch_size)]
        config = LatencyConfig(
            warmup_iterations=2,
            warmup_seconds=float(request["warmup_seconds"]),
            min_iterations=int(request["min_iterations"]),
            min_seconds=float(request["seconds"]),
            max_iterations=1_000_000,
            max_seconds=max(10 * float(request["seconds"]), 1.0),
        )
        return summarize_trial(measure(lambda: predictor.predict(batch), config))

    def serving(self, request: Mapping[str, Any]) -> dict[str, Any]:
        from harness.serving import measure_serving

        label = request["cell"]
        if label not in self.serving_cells:
            raise HarnessError(f"cell {label!r} is not one the suite's [serving] selects")
        spec, images = self.serving_cells[label]
        bound_ms = spec.serving.bound_for(spec.dataset, spec.variant, model=spec.model)
        started = time.perf_counter()
        serving = measure_serving(
            self.predictors[label], images, spec.serving, bound_ms, int(request["seed"])
        )
        return {"ok": True, "serving": serving, "seconds": time.perf_counter() - started}

    def close(self) -> None:
        for predictor in self.predictors.values():
            predictor.close()


def serve(requests: IO[str], replies: IO[str]) -> int:
    """Answer requests until ``exit`` or the end of input."""
    from harness.worker import describe_exception

    server = _Server()
    try:
        for line in requests:
            request = json.loads(line)
            if request["op"] == "exit":
                break
            try:
                reply = getattr(server, request["op"])(request)
            except Exception as exc:
                reply = {"ok": False, "error": describe_exception(exc)}
            replies.write(json.dumps(reply) + "\n")
            replies.flush()
    finally:
        server.close()
    return 0


class TrialWorker:
    """The coordinator's handle on one worker process, run by ``python`` (any environment
    where this harness and the cells' plugins are installed)."""

    def __init__(
        self, python: str, log_path: Path, timeout_s: float, memory_limit_bytes: int | None = None
    ) -> None:
        """``memory_limit_bytes``: the resident memory the worker and what it started may hold
        (:mod:`harness.memory`) before it is killed; None: no limit."""
        self.python = python
        self.log_path = log_path
        self.timeout_s = timeout_s
        self.memory_limit_bytes = memory_limit_bytes
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = log_path.open("wb")
        try:
            # A session of its own, so that closing it takes what a plugin started, too; the
            # runner's pid, so that it dies with the coordinator (harness.lifetime.die_with_parent).
            self._process = subprocess.Popen(
                [python, "-m", "harness.trial_worker"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=self._log,
                text=True,
                bufsize=1,
                env=os.environ | {RUNNER_PID_VARIABLE: str(os.getpid())},
                start_new_session=True,
            )
        except OSError as exc:
            self._log.close()
            raise TrialWorkerError(f"cannot start a trial worker with {python}: {exc}") from exc
        self._memory = ResidentMemory(self._process.pid)

    def prepare(self, specs: Sequence[Any]) -> dict[str, Any]:
        return self._ask({"op": "prepare", "cells": [spec.to_json() for spec in specs]})

    def trial(
        self,
        cell: str,
        batch_size: int,
        seconds: float,
        warmup_seconds: float,
        min_iterations: int,
    ) -> dict[str, Any]:
        return self._ask(
            {
                "op": "trial",
                "cell": cell,
                "batch_size": batch_size,
                "seconds": seconds,
                "warmup_seconds": warmup_seconds,
                "min_iterations": min_iterations,
            }
        )

    def serving(self, cell: str, seed: int) -> dict[str, Any]:
        return self._ask({"op": "serving", "cell": cell, "seed": seed})

    def close(self) -> None:
        """Ask the worker to exit, then kill its process group: nothing it started survives."""
        if self._process.poll() is None:
            with contextlib.suppress(OSError, subprocess.TimeoutExpired):
                self._process.stdin.write(json.dumps({"op": "exit"}) + "\n")
                self._process.stdin.flush()
                self._process.wait(timeout=30)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self._process.pid, signal.SIGKILL)
        self._process.wait()
        self._log.close()

    def _ask(self, request: dict[str, Any]) -> dict[str, Any]:
        process = self._process
        try:
            process.stdin.write(json.dumps(request) + "\n")
            process.stdin.flush()
        except OSError:
            raise TrialWorkerError(self._death("died")) from None
        deadline = time.monotonic() + self.timeout_s
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                process.kill()
                process.wait()
                raise TrialWorkerError(self._death(f"gave no answer within {self.timeout_s:g} s"))
            ready, _, _ = select.select([process.stdout], [], [], min(left, POLL_INTERVAL_S))
            if ready:
                break
            limit = self.memory_limit_bytes
            if limit is not None and self._memory.read() > limit:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()
                raise TrialWorkerError(self._death(limit_error(self._memory.peak, limit)))
        line = process.stdout.readline()
        if not line:
            process.wait()
            raise TrialWorkerError(self._death(f"died (exit code {process.returncode})"))
        reply = json.loads(line)
        if not reply.get("ok"):
            raise TrialWorkerError(f"trial worker ({self.python}): {reply.get('error')}")
        return reply

    def _death(self, how: str) -> str:
        self._log.flush()
        tail = self.log_path.read_text(errors="replace")[-2000:].strip()
        return f"trial worker ({self.python}) {how}; log {self.log_path} ends with:\n{tail}"


def main() -> int:
    from harness.lifetime import die_with_parent

    die_with_parent()
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "w", buffering=1)
    sys.stdout.flush()
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    return serve(sys.stdin, replies)


if __name__ == "__main__":
    sys.exit(main())
