"""The machine and software a run measured on, recorded with every run.

Two runs are only comparable when these match (``harness compare`` checks the CPU model and its
instruction set, the thread settings and the libraries' major versions): the same "AMD EPYC" can
be AVX2-only one day and AVX-512 with VNNI the next, and the kernels the runtimes pick differ.
Capturing is cheap: library versions come from package metadata, so TensorFlow is never imported
here; ONNX Runtime is (about 0.1 s), for its own view of the machine. Whatever cannot be read is
None, never an exception: a fingerprint must not stop a run.
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

ISA_FEATURES = frozenset(
    {
        "sse4_2",
        "avx",
        "avx2",
        "fma",
        "f16c",
        "avx512f",
        "avx512bw",
        "avx512vl",
        "avx512_vnni",
        "avx512_bf16",
        "avx_vnni",
        "amx_tile",
        "amx_bf16",
        "amx_int8",
        "asimd",
        "sve",
        "sve2",
        "i8mm",
        "bf16",
    }
)
"""Instruction-set features that change which kernels oneDNN, MLAS and Eigen run, named as
Linux's ``/proc/cpuinfo`` names them (macOS names are mapped onto these)."""

_FEATURE_ALIASES = {
    "avx1_0": "avx",
    "avx2_0": "avx2",
    "avx512vnni": "avx512_vnni",
    "avx512bf16": "avx512_bf16",
    "avxvnni": "avx_vnni",
    "amxtile": "amx_tile",
    "amxbf16": "amx_bf16",
    "amxint8": "amx_int8",
    "neon": "asimd",
    "advsimd": "asimd",
}
"""Other spellings (macOS ``sysctl``, ARM's NEON) of the names in :data:`ISA_FEATURES`."""

_ARM_IMPLEMENTERS = {
    "0x41": "ARM",
    "0x42": "Broadcom",
    "0x43": "Cavium",
    "0x48": "HiSilicon",
    "0x4e": "NVIDIA",
    "0x51": "Qualcomm",
    "0x61": "Apple",
    "0xc0": "Ampere",
}
"""``CPU implementer`` codes of ARM cores in ``/proc/cpuinfo``."""

_SYSFS_CPU = Path("/sys/devices/system/cpu/cpu0")
_COMMAND_TIMEOUT_S = 10


def capture_environment() -> dict[str, Any]:
    """Everything about this machine and its software that can change the numbers."""
    memory = psutil.virtual_memory()
    return {
        "cpu_model": cpu_model(),
        "cpu": cpu_fingerprint(),
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


def cpu_fingerprint() -> dict[str, Any]:
    """What the kernels depend on: vendor, family/model/stepping, ISA features, caches, SMT,
    hypervisor, frequency governor, and ONNX Runtime's own view."""
    cpuinfo = _read(Path("/proc/cpuinfo"))
    if cpuinfo is None and platform.system() == "Darwin":
        names = ("hw", "machdep.cpu", "kern.hv_vmm_present")  # one unknown name fails a call
        fingerprint = parse_sysctl("".join(_run(["sysctl", name]) or "" for name in names))
    else:
        fingerprint = parse_cpuinfo(cpuinfo or "")
        fingerprint["caches"] = cache_sizes(_SYSFS_CPU / "cache")
    physical, logical = psutil.cpu_count(logical=False), psutil.cpu_count(logical=True)
    fingerprint["threads_per_core"] = logical // physical if physical and logical else None
    fingerprint["hypervisor"] = hypervisor_name(Path("/sys"), fingerprint["virtualized"])
    fingerprint["governor"] = _read(_SYSFS_CPU / "cpufreq" / "scaling_governor")
    fingerprint["onnxruntime"] = onnxruntime_view()
    return fingerprint


def parse_cpuinfo(text: str) -> dict[str, Any]:
    """The fingerprint fields ``/proc/cpuinfo`` holds (x86 or ARM), from its first processor."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            if fields:
                break  # the first processor's block is enough
            continue
        key, _, value = line.partition(":")
        fields.setdefault(key.strip().lower(), value.strip())
    flags = (fields.get("flags") or fields.get("features") or "").split()
    virtualized = "hypervisor" in flags if "flags" in fields else None
    if "cpu implementer" in fields:  # ARM: implementer, architecture, part, variant/revision
        implementer = fields["cpu implementer"].lower()
        variant, revision = fields.get("cpu variant"), fields.get("cpu revision")
        return _fingerprint(
            vendor=_ARM_IMPLEMENTERS.get(implementer, implementer),
            family=_integer(fields.get("cpu architecture")),
            model=fields.get("cpu part"),
            stepping=f"r{variant.lower().removeprefix('0x')}p{revision}"
            if variant and revision
            else None,
            flags=flags,
            virtualized=virtualized,
        )
    return _fingerprint(
        vendor=fields.get("vendor_id"),
        family=_integer(fields.get("cpu family")),
        model=_integer(fields.get("model")),
        stepping=_integer(fields.get("stepping")),
        flags=flags,
        virtualized=virtualized,
    )


def parse_sysctl(text: str) -> dict[str, Any]:
    """The fingerprint fields the output of macOS's ``sysctl hw machdep.cpu kern.hv_vmm_present``
    holds (Intel or Apple silicon)."""
    values: dict[str, str] = {}
    for line in text.splitlines():
        key, separator, value = line.partition(":")
        if separator:
            values[key.strip()] = value.strip()
    flags = [
        name.removeprefix("hw.optional.").replace("arm.FEAT_", "")
        for name, value in values.items()
        if name.startswith("hw.optional.") and value == "1"
    ]
    flags += values.get("machdep.cpu.features", "").split()
    flags += values.get("machdep.cpu.leaf7_features", "").split()
    vmm = values.get("kern.hv_vmm_present")
    fingerprint = _fingerprint(
        vendor=values.get("machdep.cpu.vendor") or ("Apple" if "arm64" in flags else None),
        family=_integer(values.get("machdep.cpu.family") or values.get("hw.cpufamily")),
        model=_integer(values.get("machdep.cpu.model")),
        stepping=_integer(values.get("machdep.cpu.stepping")),
        flags=[flag.replace(".", "_") for flag in flags],
        virtualized=None if vmm is None else vmm == "1",
    )
    fingerprint["caches"] = {
        level: _integer(values.get(f"hw.{key}cachesize"))
        for level, key in (("L1d", "l1d"), ("L2", "l2"), ("L3", "l3"))
    }
    return fingerprint


def _fingerprint(
    vendor: str | None,
    family: int | None,
    model: int | str | None,
    stepping: int | str | None,
    flags: list[str],
    virtualized: bool | None,
) -> dict[str, Any]:
    features = {_FEATURE_ALIASES.get(flag.lower(), flag.lower()) for flag in flags}
    return {
        "vendor": vendor or None,
        "family": family,
        "model": model,
        "stepping": stepping,
        "isa": sorted(features & ISA_FEATURES) if flags else None,
        "virtualized": virtualized,
    }


def cache_sizes(directory: Path) -> dict[str, int | None]:
    """L1d, L2 and L3 sizes in bytes from a sysfs ``cpuN/cache`` folder (None where unreadable)."""
    sizes: dict[str, int | None] = {"L1d": None, "L2": None, "L3": None}
    for index in sorted(directory.glob("index*")):
        level, kind = _read(index / "level"), _read(index / "type")
        name = "L1d" if (level, kind) == ("1", "Data") else f"L{level}"
        if name in sizes and kind in ("Data", "Unified"):
            sizes[name] = parse_size(_read(index / "size") or "")
    return sizes


def parse_size(text: str) -> int | None:
    """Bytes in a sysfs size such as ``48K`` or ``32M``; None if it is not one."""
    match = re.fullmatch(r"\s*(\d+)\s*([KMG]?)B?\s*", text, flags=re.IGNORECASE)
    if match is None:
        return None
    return int(match.group(1)) * {"": 1, "K": 2**10, "M": 2**20, "G": 2**30}[match.group(2).upper()]


def hypervisor_name(sys_root: Path, virtualized: bool | None) -> str | None:
    """The hypervisor's name: Xen's ``hypervisor/type``, or on a virtual machine the firmware's
    vendor and product (``class/dmi/id``; on bare metal that would name the board); None where
    neither is readable."""
    xen = _read(sys_root / "hypervisor" / "type")
    if xen or not virtualized:
        return xen or None
    dmi = sys_root / "class" / "dmi" / "id"
    names = [_read(dmi / "sys_vendor"), _read(dmi / "product_name")]
    return " ".join(name for name in names if name) or None


def onnxruntime_view() -> dict[str, Any] | None:
    """ONNX Runtime's device, execution providers and build, or None where it does not import."""
    try:
        import onnxruntime

        return {
            "device": onnxruntime.get_device(),
            "providers": onnxruntime.get_available_providers(),
            "build": onnxruntime.get_build_info(),
        }
    except Exception:  # a broken install must not stop a run; its workers will say why
        return None


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


def _integer(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def _read(path: Path) -> str | None:
    """A small text file's stripped content, or None if it is missing or unreadable."""
    try:
        return path.read_text(errors="replace").strip()
    except OSError:
        return None


def _run(command: list[str]) -> str | None:
    """A command's stdout, or None if it fails, is missing or hangs."""
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=_COMMAND_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None
