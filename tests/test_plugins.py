"""Plugin discovery: in-process objects, real entry points, broken plugins, allow/block lists."""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import numpy as np
import pytest

from harness import hookimpl, hookspecs
from harness.api import Backend, Dataset, LabelledImages, ModelSpec, Predictor
from harness.cli import main
from harness.plugins import get_host

FIRST_PARTY = {"mnist", "cifar10", "book_cnn", "keras", "onnxruntime"}

PLUGIN_SOURCE = """
from harness import hookimpl
from harness.api import Dataset


class TinyDataset(Dataset):
    name = "{name}"
    input_shape = (4, 4, 1)
    class_names = ("a", "b")
    split_sizes = {{"train": 2, "test": 2}}

    def load(self, data_dir, split):
        raise NotImplementedError


@hookimpl
def register_datasets(register):
    register(TinyDataset())
"""


class ToyDataset(Dataset):
    name = "toy"
    input_shape = (2, 2, 1)
    class_names = ("x", "y")
    split_sizes = {"train": 4, "test": 4}

    def load(self, data_dir: Path, split: str) -> LabelledImages:
        return LabelledImages(np.zeros((4, 2, 2, 1), np.uint8), np.zeros(4, np.int64))


class ToyModel(ModelSpec):
    name = "toy_model"
    variants = ("small",)

    def build(self, variant, input_shape, num_classes):
        raise NotImplementedError


class ToyPredictor(Predictor):
    def predict(self, batch: np.ndarray) -> np.ndarray:
        return np.zeros((len(batch), 2), np.float32)


class ToyBackend(Backend):
    name = "toy_backend"
    devices = ("cpu", "tpu")

    def probe_devices(self):
        return {"cpu": None, "tpu": "no TPU in a unit test"}

    def prepare(self, model, device, options):
        return ToyPredictor()


class ToyPlugin:
    @hookimpl
    def register_datasets(self, register):
        register(ToyDataset())

    @hookimpl
    def register_models(self, register):
        register(ToyModel())

    @hookimpl
    def register_backends(self, register):
        register(ToyBackend())


def list_json(capsys: pytest.CaptureFixture[str]) -> dict:
    assert main(["list", "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_in_test_plugin_object_appears_in_list(register_plugin, capsys):
    register_plugin(ToyPlugin(), "toy")
    listing = list_json(capsys)
    assert "toy" in {d["name"] for d in listing["datasets"]}
    assert "toy_model" in {m["name"] for m in listing["models"]}
    backend = next(b for b in listing["backends"] if b["name"] == "toy_backend")
    assert backend["devices"]["cpu"] == {"available": True, "reason": None}
    assert backend["devices"]["tpu"] == {"available": False, "reason": "no TPU in a unit test"}
    assert backend["plugin"] == "toy"


def test_an_unregistered_plugin_object_leaves_the_listing(capsys):
    host = get_host()
    host.register(ToyPlugin(), name="toy")
    assert "toy" in {d["name"] for d in list_json(capsys)["datasets"]}
    host.unregister("toy")
    assert "toy" not in {d["name"] for d in list_json(capsys)["datasets"]}


class BackendWhoseProbeRaises(ToyBackend):
    name = "raising_probe"

    def probe_devices(self):
        raise RuntimeError("driver library missing")


class RaisingProbePlugin:
    @hookimpl
    def register_backends(self, register):
        register(BackendWhoseProbeRaises())


def test_a_probe_that_raises_lists_its_devices_unavailable_with_the_error(register_plugin, capsys):
    register_plugin(RaisingProbePlugin(), "raising")
    listing = list_json(capsys)
    backend = next(b for b in listing["backends"] if b["name"] == "raising_probe")
    reason = "probe_devices() raised RuntimeError: driver library missing"
    assert backend["devices"] == {
        "cpu": {"available": False, "reason": reason},
        "tpu": {"available": False, "reason": reason},
    }
    assert "onnxruntime" in {b["name"] for b in listing["backends"]}


def test_first_party_plugins_come_through_the_entry_point_group(capsys):
    listing = list_json(capsys)
    plugins = {p["name"]: p for p in listing["plugins"]}
    assert set(plugins) >= FIRST_PARTY
    assert {plugins[name]["distribution"] for name in FIRST_PARTY} == {"cnn-harness"}


def test_third_party_distribution_is_discovered_through_importlib_metadata(
    make_distribution, capsys
):
    make_distribution("harness-tiny", "harness_tiny", PLUGIN_SOURCE.format(name="tiny"))
    listing = list_json(capsys)
    tiny = next(d for d in listing["datasets"] if d["name"] == "tiny")
    assert tiny["distribution"] == "harness-tiny"
    assert tiny["version"] == "1.0"


def test_broken_plugins_are_listed_and_everything_else_still_works(make_distribution, capsys):
    make_distribution("harness-bad-import", "harness_bad_import", "import not_a_module_at_all\n")
    make_distribution(
        "harness-bad-hook",
        "harness_bad_hook",
        "from harness import hookimpl\n\n"
        "@hookimpl\ndef register_models(register):\n    raise RuntimeError('model zoo offline')\n",
    )
    make_distribution("harness-tiny", "harness_tiny", PLUGIN_SOURCE.format(name="tiny"))
    listing = list_json(capsys)
    broken = {b["name"]: b for b in listing["broken"]}
    assert broken["harness_bad_import"]["stage"] == "import"
    assert "not_a_module_at_all" in broken["harness_bad_import"]["error"]
    assert broken["harness_bad_import"]["distribution"] == "harness-bad-import"
    assert broken["harness_bad_hook"]["stage"] == "register_models"
    assert "model zoo offline" in broken["harness_bad_hook"]["error"]
    assert "tiny" in {d["name"] for d in listing["datasets"]}
    assert {p["name"] for p in listing["plugins"]} >= FIRST_PARTY


def test_broken_plugins_show_in_the_human_listing(make_distribution, capsys):
    make_distribution("harness-bad-import", "harness_bad_import", "raise ImportError('boom')\n")
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "Broken plugins:" in out
    assert "harness_bad_import (harness-bad-import 1.0) failed at import" in out
    assert "boom" in out


def test_misspelt_hook_name_is_a_loud_error(make_distribution, capsys):
    make_distribution(
        "harness-typo",
        "harness_typo",
        "from harness import hookimpl\n\n@hookimpl\ndef register_dataset(register):\n    pass\n",
    )
    listing = list_json(capsys)
    broken = {b["name"]: b for b in listing["broken"]}
    assert "register_dataset" in broken["harness_typo"]["error"]


def test_duplicate_name_is_an_error_naming_both_plugins(make_distribution, capsys):
    make_distribution("harness-one", "harness_one", PLUGIN_SOURCE.format(name="twin"))
    make_distribution("harness-two", "harness_two", PLUGIN_SOURCE.format(name="twin"))
    listing = list_json(capsys)
    (error,) = [b["error"] for b in listing["broken"] if b["name"] == "harness_two"]
    assert "'harness_one'" in error and "'harness_two'" in error and "'twin'" in error


def test_allow_list_loads_only_the_named_plugins(monkeypatch, capsys):
    monkeypatch.setenv("HARNESS_PLUGINS", "mnist")
    listing = list_json(capsys)
    assert [p["name"] for p in listing["plugins"]] == ["mnist"]
    assert set(listing["disabled"]) == FIRST_PARTY - {"mnist"}


def test_block_list_switches_a_plugin_off(monkeypatch, capsys):
    monkeypatch.setenv("HARNESS_DISABLE_PLUGINS", "onnxruntime, keras")
    listing = list_json(capsys)
    assert {"onnxruntime", "keras"}.isdisjoint(p["name"] for p in listing["plugins"])
    assert {"onnxruntime", "keras"} <= set(listing["disabled"])


def test_registering_something_that_is_not_a_dataset_marks_the_plugin_broken(register_plugin):
    class Confused:
        @hookimpl
        def register_datasets(self, register):
            register(ToyModel())

    register_plugin(Confused(), "confused")
    registry = get_host().registry()
    assert "toy_model" not in registry.datasets.names()
    (broken,) = [b for b in get_host().broken if b.name == "confused"]
    assert "is not a harness.api.Dataset" in broken.error


def test_every_hook_spec_has_a_docstring_and_is_documented():
    docs = (Path(__file__).parents[1] / "docs" / "plugins.md").read_text()
    specs = [
        name
        for name, fn in inspect.getmembers(hookspecs, inspect.isfunction)
        if name.startswith("register_")
    ]
    assert specs == ["register_backends", "register_datasets", "register_models"]
    for name in specs:
        assert inspect.getdoc(getattr(hookspecs, name)), f"{name} has no docstring"
        assert f"`{name}(register)`" in docs, f"{name} is not documented in docs/plugins.md"
