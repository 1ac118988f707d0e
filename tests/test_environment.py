"""What a run records about its machine: the exact keys the compare step relies on."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from harness import __version__, environment
from harness.environment import capture_environment

EXPECTED_KEYS = {
    "cpu_model",
    "physical_cores",
    "logical_cores",
    "ram_bytes",
    "gpus",
    "os",
    "python",
    "libraries",
    "threads",
    "git_sha",
    "harness_version",
}


def test_environment_has_exactly_the_keys_compare_reads() -> None:
    env = capture_environment()
    assert set(env) == EXPECTED_KEYS
    assert env["logical_cores"] >= env["physical_cores"] >= 1
    assert env["ram_bytes"] > 0
    assert env["python"] == ".".join(map(str, sys.version_info[:3]))
    assert env["harness_version"] == __version__
    assert isinstance(env["cpu_model"], str) and env["cpu_model"]


def test_library_versions_come_from_metadata_without_importing_tensorflow() -> None:
    sys.modules.pop("tensorflow", None)
    versions = capture_environment()["libraries"]
    assert set(versions) == {
        "tensorflow",
        "keras",
        "onnxruntime",
        "tf2onnx",
        "onnx",
        "numpy",
        "pandas",
        "pluggy",
    }
    import numpy

    assert versions["numpy"] == numpy.__version__
    assert "tensorflow" not in sys.modules


def test_a_missing_library_is_none(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        environment, "LIBRARY_DISTRIBUTIONS", {"nothing": ("no-such-distribution-xyz",)}
    )
    assert environment.library_versions() == {"nothing": None}


def test_thread_settings_record_set_and_unset_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    monkeypatch.delenv("TF_NUM_INTRAOP_THREADS", raising=False)
    threads = capture_environment()["threads"]
    assert threads["OMP_NUM_THREADS"] == "3"
    assert threads["TF_NUM_INTRAOP_THREADS"] is None


def test_gpus_are_parsed_from_nvidia_smi(monkeypatch: pytest.MonkeyPatch) -> None:
    outputs = {
        "--query-gpu=name,driver_version": "NVIDIA H100 80GB HBM3, 550.54.15\n",
        "": "| NVIDIA-SMI 550.54.15   Driver Version: 550.54.15   CUDA Version: 12.4 |\n",
    }

    def fake_run(command: list[str]) -> str:
        return outputs[command[1] if len(command) > 1 else ""]

    monkeypatch.setattr(environment.shutil, "which", lambda name: f"/usr/bin/{name}")
    monkeypatch.setattr(environment, "_run", fake_run)
    assert environment.nvidia_gpus() == [
        {"name": "NVIDIA H100 80GB HBM3", "driver": "550.54.15", "cuda": "12.4"}
    ]


def test_no_nvidia_smi_means_no_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(environment.shutil, "which", lambda name: None)
    assert environment.nvidia_gpus() == []


def test_git_sha_is_none_outside_a_checkout(tmp_path: Path) -> None:
    assert environment.git_sha(tmp_path) is None


def test_git_sha_of_a_checkout_is_a_full_hash() -> None:
    sha = environment.git_sha(Path(environment.__file__).parent)
    if sha is None:
        pytest.skip("the harness is not installed from a git checkout here")
    assert len(sha) == 40 and int(sha, 16) >= 0
