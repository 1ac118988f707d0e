"""docs/plugins.md documents every hook, every public member of the plugin base classes and the
conformance kit, and its walkthrough plugin really works."""

from __future__ import annotations

import inspect
import re
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from harness import PROJECT_NAME, hookspecs, testing
from harness.api import Backend, Dataset, ModelSpec, Predictor

GUIDE = Path(__file__).resolve().parents[1] / "docs" / "plugins.md"
BASE_CLASSES = (Dataset, ModelSpec, Backend, Predictor)


def sections(text: str) -> dict[str, str]:
    """Heading text -> body, for every ``##`` and ``###`` heading."""
    parts = re.split(r"^(#{2,3} .+)$", text, flags=re.MULTILINE)
    pairs = zip(parts[1::2], parts[2::2], strict=True)
    return {heading.lstrip("# ").strip(): body for heading, body in pairs}


def documented_names(body: str) -> set[str]:
    """Names in backticks in the first cell of each table row (``Class.`` prefixes dropped)."""
    names: set[str] = set()
    for line in body.splitlines():
        if line.startswith("| `"):
            names |= set(re.findall(r"`(?:\w+\.)?(\w+)", line.split("|")[1]))
    return names


def public_members(cls: type) -> set[str]:
    """Attributes and methods a plugin author sees: defined or annotated on the class itself."""
    declared = set(vars(cls)) | set(getattr(cls, "__annotations__", {}))
    return {name for name in declared if not name.startswith("_")}


def undocumented(cls: type, text: str) -> set[str]:
    body = sections(text).get(f"`{cls.__name__}`", "")
    return public_members(cls) - documented_names(body)


def hook_names(module: ModuleType) -> set[str]:
    return {name for name, f in vars(module).items() if hasattr(f, f"{PROJECT_NAME}_spec")}


@pytest.fixture(scope="module")
def guide() -> str:
    return GUIDE.read_text()


def test_every_hook_is_in_the_hook_table(guide: str) -> None:
    hooks = hook_names(hookspecs)
    assert hooks == {"register_datasets", "register_models", "register_backends"}
    body = sections(guide)["The contract in one page"]
    assert hooks - documented_names(body) == set()


@pytest.mark.parametrize("cls", BASE_CLASSES, ids=lambda cls: cls.__name__)
def test_every_public_member_of_a_base_class_is_in_its_table(cls: type, guide: str) -> None:
    assert undocumented(cls, guide) == set(), f"add them to the `{cls.__name__}` table"


def test_a_member_added_without_documentation_is_caught(guide: str) -> None:
    class GrownBackend(Backend):
        warm_up_seconds = 1.0

        def export(self) -> None: ...

    GrownBackend.__name__ = "Backend"
    assert undocumented(GrownBackend, guide) == {"warm_up_seconds", "export"}


def test_every_public_function_of_the_conformance_kit_is_documented(guide: str) -> None:
    public = {
        name
        for name, obj in vars(testing).items()
        if not name.startswith("_")
        and inspect.isfunction(obj)
        and obj.__module__ == testing.__name__
    }
    body = sections(guide)["Testing a plugin: the conformance kit"]
    assert public - set(re.findall(r"`(\w+)\(", body)) == set()


def walkthrough_module(guide: str) -> dict[str, Any]:
    block = guide.split("`my_harness_plugin.py`:", 1)[1]
    source = re.search(r"```python\n(.*?)```", block, flags=re.DOTALL).group(1)
    namespace: dict[str, Any] = {"__name__": "my_harness_plugin"}
    exec(compile(source, str(GUIDE), "exec"), namespace)
    return namespace


@pytest.mark.slow
def test_the_walkthrough_backend_passes_the_conformance_kit(
    guide: str, tmp_path: Path, register_plugin: Any
) -> None:
    plugin = ModuleType("my_harness_plugin")
    vars(plugin).update(walkthrough_module(guide))
    register_plugin(plugin, "keras_eager")
    from harness.plugins import get_registry

    testing.check_backend_on_reference(get_registry().backend("keras_eager"), tmp_path)


def test_every_report_column_is_documented_in_docs_reports():
    from harness.report.schema import SAMPLE_COLUMNS, SUMMARY_COLUMNS, TRIAL_COLUMNS

    text = (Path(__file__).parents[1] / "docs" / "reports.md").read_text()
    for column in (*SUMMARY_COLUMNS, *SAMPLE_COLUMNS, *TRIAL_COLUMNS):
        assert f"| `{column.name}` | {column.dtype} | {column.meaning} |" in text, column.name
