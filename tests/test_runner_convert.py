"""The runner lets each backend convert a trained model once, before its workers start."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from harness.api import Backend, TrainedModel
from harness.registry import Registry
from harness.runner import Runner
from harness.suite import load_suite


class RecordingBackend(Backend):
    name = "recording"

    def __init__(self) -> None:
        self.converted: list[tuple[str, dict]] = []

    def convert(self, model, options):
        self.converted.append((model.cache_key, dict(options)))

    def prepare(self, model, device, options):
        raise AssertionError("not called here")


class FailingConverter(Backend):
    name = "failing"

    def convert(self, model, options):
        raise RuntimeError("converter exploded")

    def prepare(self, model, device, options):
        raise AssertionError("not called here")


def test_each_backend_converts_with_its_options_and_a_failure_only_warns(tmp_path: Path) -> None:
    registry = Registry()
    recording = RecordingBackend()
    registry.backends.add(recording, "tests")
    registry.backends.add(FailingConverter(), "tests")
    suite = replace(load_suite("smoke"), backend_options={"recording": {"threads": 1}})
    lines: list[str] = []
    runner = Runner(suite, registry, tmp_path, tmp_path, tmp_path, log=lines.append)
    trained = TrainedModel("d", "m", "v", tmp_path / "m.keras", tmp_path / "d-m-v-key", "key")

    runner._convert(trained, {"recording", "failing"})

    assert recording.converted == [("key", {"threads": 1})]
    (warning,) = lines
    assert "failing could not convert d-m-v-key (converter exploded)" in warning
    assert "workers will try again" in warning
    assert runner.phases["export"] > 0
