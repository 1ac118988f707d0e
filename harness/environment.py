"""The machine and software a run measured on, recorded with every run.

Two runs are only comparable when these match (``harness compare`` checks the CPU model, the
thread settings and the libraries' major versions). Capturing is cheap: library versions come
from package metadata, so TensorFlow is never imported here.
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

import psutil

from harness import __version__

LIBRARY_DISTRIBUTIONS: dict[str, tuple[str, ...]] = {
    "tensorflow": ("tensorflow", "tensorflow-cpu", "tensorflow-macos", "tf-nightly"),
    "keras": ("keras",),
    "onnxruntime": ("onnxruntime", "onnxruntime-gpu", "ort-nightly"),
    "tf2onnx": ("tf2onnx",),
    "onnx": ("onnx",),
    "numpy": ("numpy",),
    "pandas": ("pandas",),
    "pluggy": ("pluggy",),
}
"""Each library, and the distributions that can provide it, in order of preference."""

SPEED_ENV_VARS = (
    "OMP_NUM_THREADS",
    "OMP_PROC_BIND",
    "OMP_PLACES",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "KMP_AFFINITY",
    "KMP_BLOCKTIME",
    "TF_NUM_INTRAOP_THREADS",
    "TF_NUM_INTEROP_THREADS",
    "TF_ENABLE_ONEDNN_OPTS",
    "TF_XLA_FLAGS",
    "TF_GPU_ALLOCATOR",
    "TF_FORCE_GPU_ALLOW_GROWTH",
    "CUDA_VISIBLE_DEVICES",
)
"""Environment variables that change how fast TensorFlow or ONNX Runtime run."""

_COMMAND_TIMEOUT_S = 10


def capture_environment() -> dict[str, Any]:
    """Everything about this machine and its software that can change the numbers."""
    memory = psutil.virtual_memory()
    return {
        "cpu_model": cpu_model(),
        "physical_cores": psutil.cpu_count(logical=False),
        "logical_cores": psutil.cpu_count(logical=True),
        "ram_bytes": int(memory.total),
        "gpus": nvidia_gpus(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "libraries": library_versions(),
        "threads": {name: os.environ.get(name) for name in SPEED_ENV_VARS},
        "git_sha": git_sha(Path(__file__).resolve().parent),
        "harness_version": __version__,
    }


def cpu_model() -> str:
    """The CPU's marketing name (``/proc/cpuinfo`` on Linux, else what ``platform`` knows)."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("model name", "Hardware", "Model") and value.strip():
                return value.strip()
    if platform.system() == "Darwin":
        name = _run(["sysctl", "-n", "machdep.cpu.brand_string"])
        if name:
            return name.strip()
    return platform.processor() or platform.machine() or "unknown"


def library_versions() -> dict[str, str | None]:
    """Installed version of each library in :data:`LIBRARY_DISTRIBUTIONS`, or None."""
    versions: dict[str, str | None] = {}
    for library, distributions in LIBRARY_DISTRIBUTIONS.items():
        versions[library] = None
        for distribution in distributions:
            try:
                versions[library] = metadata.version(distribution)
                break
            except metadata.PackageNotFoundError:
                continue
    return versions


def nvidia_gpus() -> list[dict[str, str | None]]:
    """Name, driver and CUDA version of each NVIDIA GPU that ``nvidia-smi`` reports."""
    if shutil.which("nvidia-smi") is None:
        return []
    listing = _run(
        ["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader,nounits"]
    )
    if not listing:
        return []
    banner = _run(["nvidia-smi"]) or ""
    cuda = re.search(r"CUDA Version:\s*([\d.]+)", banner)
    gpus = []
    for line in listing.strip().splitlines():
        name, _, driver = line.rpartition(",")
        gpus.append(
            {
                "name": name.strip(),
                "driver": driver.strip(),
                "cuda": cuda.group(1) if cuda else None,
            }
        )
    return gpus


def git_sha(directory: Path) -> str | None:
    """The commit checked out where ``directory`` lives, or None outside a git checkout."""
    if shutil.which("git") is None:
        return None
    sha = _run(["git", "-C", str(directory), "rev-parse", "HEAD"])
    return sha.strip() if sha else None


def _run(command: list[str]) -> str | None:
    """A command's stdout, or None if it fails, is missing or hangs."""
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=_COMMAND_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None
