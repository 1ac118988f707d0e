"""Plugin discovery: in-process objects, real entry points, broken plugins, allow/block lists."""

from __future__ import annotations

import inspect
import json
import re
from pathlib import Path

import numpy as np
import pytest

from harness import hookimpl, hookspecs
from harness.api import Backend, Dataset, LabelledImages, ModelSpec, Predictor
from harness.cli import main
from harness.errors import RegistryError
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


IMPOSTOR_SOURCE = """
from harness import hookimpl
from harness.api import Dataset, ModelSpec


class Impostor(ModelSpec):
    name = "book_cnn"
    variants = ("pool",)

    def build(self, variant, input_shape, num_classes):
        raise NotImplementedError


class Sidekick(Dataset):
    name = "sidekick"
    input_shape = (4, 4, 1)
    class_names = ("a", "b")
    split_sizes = {"train": 2, "test": 2}

    def load(self, data_dir, split):
        raise NotImplementedError


@hookimpl
def register_models(register):
    register(Impostor())


@hookimpl
def register_datasets(register):
    register(Sidekick())
"""


def make_impostor(make_distribution, entry_name: str = "aaa_clash") -> None:
    """A third-party distribution whose entry point sorts before every first-party one and
    registers the book's model name."""
    make_distribution("aaa-clash", "aaa_clash", IMPOSTOR_SOURCE, entry_name=entry_name)


def test_a_first_party_name_stays_first_party_whatever_sorts_first(make_distribution, capsys):
    make_impostor(make_distribution)
    listing = list_json(capsys)
    (book_cnn,) = [m for m in listing["models"] if m["name"] == "book_cnn"]
    assert book_cnn["plugin"] == "book_cnn" and book_cnn["distribution"] == "cnn-harness"
    assert type(get_host().registry().model("book_cnn")).__module__.startswith("harness_book_cnn")
    (broken,) = [b for b in listing["broken"] if b["name"] == "aaa_clash"]
    assert broken["stage"] == "register_models"
    assert "by plugin 'book_cnn' and by plugin 'aaa_clash'" in broken["error"]
    assert "HARNESS_OVERRIDE=book_cnn" in broken["error"]
    assert "book_cnn" not in {b["name"] for b in listing["broken"]}


def test_a_broken_plugin_contributes_nothing_and_its_names_say_why(make_distribution, capsys):
    make_impostor(make_distribution)
    registry = get_host().registry()
    assert "sidekick" not in registry.datasets.names()
    with pytest.raises(RegistryError, match="dataset 'sidekick' is unavailable: its plugin "):
        registry.dataset("sidekick")


def test_the_run_record_lists_broken_plugins_with_their_error(make_distribution):
    make_impostor(make_distribution)
    record = get_host().record()
    assert record["aaa_clash"]["status"] == "broken"
    assert record["aaa_clash"]["distribution"] == "aaa-clash"
    assert record["aaa_clash"]["error"].startswith("register_models: model 'book_cnn' is regis")
    assert record["book_cnn"] == {
        "distribution": "cnn-harness",
        "version": record["book_cnn"]["version"],
        "status": "ok",
        "error": None,
        "overrides": None,
    }


def test_an_entry_point_named_like_a_first_party_one_is_broken(make_distribution, capsys):
    make_impostor(make_distribution, entry_name="book_cnn")
    listing = list_json(capsys)
    (book_cnn,) = [m for m in listing["models"] if m["name"] == "book_cnn"]
    assert book_cnn["distribution"] == "cnn-harness"
    (broken,) = [b for b in listing["broken"] if b["distribution"] == "aaa-clash"]
    assert "entry point name 'book_cnn' is taken by distribution cnn-harness" in broken["error"]
    record = get_host().record()
    assert record["book_cnn"]["status"] == "ok"
    assert record["book_cnn (aaa-clash)"]["status"] == "broken"


def test_an_override_replaces_a_first_party_name_and_shows_in_the_listing(
    make_distribution, monkeypatch, capsys
):
    make_impostor(make_distribution)
    monkeypatch.setenv("HARNESS_OVERRIDE", "book_cnn")
    listing = list_json(capsys)
    (book_cnn,) = [m for m in listing["models"] if m["name"] == "book_cnn"]
    assert book_cnn["plugin"] == "aaa_clash"
    assert listing["broken"] == []
    assert listing["overrides"] == [
        {"kind": "model", "name": "book_cnn", "plugin": "aaa_clash", "replaced_plugin": "book_cnn"}
    ]
    assert get_host().record()["aaa_clash"]["overrides"] == "model book_cnn of plugin book_cnn"
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "Overrides (HARNESS_OVERRIDE=book_cnn):" in out
    assert "model book_cnn: plugin aaa_clash replaces the harness's plugin book_cnn" in out


def test_run_names_the_disabled_plugin_behind_an_unknown_backend(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("HARNESS_DISABLE_PLUGINS", "onnxruntime")
    code = main(["run", "--suite", "smoke", "--backend", "onnxruntime", "--out", str(tmp_path)])
    assert code == 2
    error = capsys.readouterr().err
    assert "unknown backend 'onnxruntime'" in error
    assert "plugin 'onnxruntime' is disabled (named in HARNESS_DISABLE_PLUGINS)" in error
    assert list(tmp_path.iterdir()) == []


def test_run_names_the_broken_plugin_behind_an_unknown_backend(make_distribution, tmp_path, capsys):
    make_distribution("harness-tpu", "harness_tpu", "import tpu_runtime_that_is_missing\n")
    code = main(["run", "--suite", "smoke", "--backend", "tpu", "--out", str(tmp_path)])
    assert code == 2
    error = capsys.readouterr().err
    assert "unknown backend 'tpu'" in error
    assert "plugin 'harness_tpu' is broken (import: ModuleNotFoundError" in error


class LongNames:
    @hookimpl
    def register_datasets(self, register):
        class LongDataset(ToyDataset):
            name = "a_dataset_with_a_long_name"

        register(LongDataset())


def test_list_aligns_names_longer_than_sixteen_characters(register_plugin, capsys):
    register_plugin(LongNames(), "long")
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("  ") and "[" in line]
    starts = {re.match(r"  \S+ +", row).end() for row in rows}
    assert len(rows) > 5 and len(starts) == 1
