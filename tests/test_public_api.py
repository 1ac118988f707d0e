"""The public surface holds: plugins and the example import the harness only through
``harness.api`` (their tests through ``harness.testing`` too), no core module imports a plugin,
and ``harness.api`` stays cheap to import."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import harness.api

ROOT = Path(__file__).resolve().parents[1]
PLUGINS = ROOT / "plugins"
EXAMPLES = ROOT / "examples"
GUIDE = ROOT / "docs" / "plugins.md"
FIRST_PARTY_PLUGINS = sorted(p.parent.name for p in PLUGINS.glob("*/__init__.py"))
NOT_YET_ON_THE_PUBLIC_API: set[str] = set()
"""First-party plugin packages that still import core modules: empty it as each switches."""
HEAVY_MODULES = ("tensorflow", "keras", "onnxruntime", "onnx", "tf2onnx", "pandas")


def imported_modules(source: str) -> Iterator[tuple[int, str, tuple[str, ...]]]:
    """(line, module, names) of every absolute import in ``source``, those inside functions
    too; ``names`` is empty for ``import x``."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name, ()
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.lineno, node.module, tuple(alias.name for alias in node.names)


def imports_past_the_public_api(source: str, path: Path) -> list[str]:
    """Each import of the harness in ``source`` (the file ``path``) that goes past its public
    surface, as ``path:line: what``: a core module, a name ``harness.api`` does not declare, or
    the conformance kit outside a test."""
    is_test = "tests" in path.parts or path.name.startswith("test_") or path.name == "conftest.py"
    allowed = {"harness.api", "harness.testing"} if is_test else {"harness.api"}
    found = []
    for line, module, names in imported_modules(source):
        where = f"{path}:{line}"
        if module == "harness" and names:  # `from harness import testing` imports a module
            modules = {f"harness.{name}" for name in names}
        elif module.split(".")[0] == "harness":
            modules = {module}
        else:
            continue
        found += [f"{where}: imports {m}" for m in sorted(modules - allowed)]
        if module == "harness.api":
            undeclared = sorted(set(names) - set(harness.api.__all__))
            found += [f"{where}: imports {n} from harness.api, not in __all__" for n in undeclared]
    return found


def plugin_and_example_files() -> list[Path]:
    """Their sources and tests, not the copies a build leaves in ``build/``."""
    files = sorted(PLUGINS.rglob("*.py")) + sorted(EXAMPLES.rglob("*.py"))
    return [
        path
        for path in files
        if "build" not in path.parts
        and not (
            path.is_relative_to(PLUGINS)
            and path.relative_to(PLUGINS).parts[0] in NOT_YET_ON_THE_PUBLIC_API
        )
    ]


def test_the_plugins_and_the_example_are_found() -> None:
    assert {"harness_book_cnn", "harness_cifar10", "harness_keras", "harness_mnist"} <= set(
        FIRST_PARTY_PLUGINS
    )
    stale = NOT_YET_ON_THE_PUBLIC_API - set(FIRST_PARTY_PLUGINS)
    assert stale == set(), "exemptions for no plugin"
    names = {path.name for path in plugin_and_example_files()}
    assert {"backend.py", "litert.py", "test_litert.py"} <= names


@pytest.mark.parametrize(
    "path", plugin_and_example_files(), ids=lambda path: str(path.relative_to(ROOT))
)
def test_plugins_and_the_example_import_the_harness_only_through_its_public_api(
    path: Path,
) -> None:
    assert imports_past_the_public_api(path.read_text(), path.relative_to(ROOT)) == []


def test_an_import_past_the_public_api_is_caught() -> None:
    source = (
        "from harness import hookimpl, testing\n"
        "from harness.api import Dataset, np\n"
        "def load():\n"
        "    from harness.idx import write_idx\n"
    )
    assert imports_past_the_public_api(source, Path("plugins/harness_x/x.py")) == [
        "plugins/harness_x/x.py:1: imports harness.hookimpl",
        "plugins/harness_x/x.py:1: imports harness.testing",
        "plugins/harness_x/x.py:2: imports np from harness.api, not in __all__",
        "plugins/harness_x/x.py:4: imports harness.idx",
    ]
    assert imports_past_the_public_api(source, Path("harness_x/tests/test_x.py")) == [
        "harness_x/tests/test_x.py:1: imports harness.hookimpl",
        "harness_x/tests/test_x.py:2: imports np from harness.api, not in __all__",
        "harness_x/tests/test_x.py:4: imports harness.idx",
    ]


def test_no_core_module_imports_a_first_party_plugin() -> None:
    found = [
        f"{path.relative_to(ROOT)}:{line}: imports {module}"
        for path in sorted((ROOT / "harness").rglob("*.py"))
        for line, module, _ in imported_modules(path.read_text())
        if module.split(".")[0] in FIRST_PARTY_PLUGINS
    ]
    assert found == []


def test_importing_the_public_api_and_every_name_it_declares_imports_no_heavy_library() -> None:
    code = (
        "import json, sys\n"
        "import harness.api as api\n"
        f"heavy = {list(HEAVY_MODULES)!r}\n"
        "loaded = lambda: sorted(m for m in heavy if m in sys.modules)\n"
        "on_import = loaded()\n"
        "missing = [n for n in api.__all__ if not hasattr(api, n)]\n"
        "print(json.dumps({'on_import': on_import, 'after_every_name': loaded(),\n"
        "                  'missing': missing, 'all': api.__all__}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["missing"] == [], "names in harness.api.__all__ that do not resolve"
    assert result["on_import"] == []
    assert result["after_every_name"] == []
    assert len(result["all"]) == len(set(result["all"])), "a name twice in __all__"


def defining_modules() -> list[str]:
    """The core modules whose objects ``harness.api`` re-exports."""
    modules = {
        getattr(getattr(harness.api, name), "__module__", None) for name in harness.api.__all__
    }
    return sorted(m for m in modules if isinstance(m, str) and m.startswith("harness."))


@pytest.mark.parametrize("first", defining_modules())
def test_the_public_api_resolves_whichever_module_is_imported_first(first: str) -> None:
    """No import cycle: ``harness.api`` and the modules it re-exports import each other in
    any order."""
    code = (
        f"import {first}\n"
        "import harness.api as api\n"
        "print([name for name in api.__all__ if not hasattr(api, name)])\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert (done.returncode, done.stderr, done.stdout) == (0, "", "[]\n")


def test_an_undeclared_name_of_the_public_api_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match=r"module 'harness\.api' has no attribute 'read_idx'"):
        harness.api.read_idx  # noqa: B018 - the lookup is what is tested


def test_every_name_of_the_public_api_is_in_the_guides_table() -> None:
    body = GUIDE.read_text().split("## The public API", 1)[1].split("\n## ", 1)[0]
    listed = {
        name
        for line in body.splitlines()
        if line.startswith("| `")
        for name in re.findall(r"`(\w+)`", line.split("|")[1])
    }
    assert sorted(set(harness.api.__all__) - listed) == [], "add them to docs/plugins.md"
    assert sorted(listed - set(harness.api.__all__)) == [], "not in harness.api.__all__"


class _EchoBackend(harness.api.Backend):
    name = "echo_for_this_test"

    def prepare(self, model, device, options):
        raise harness.api.DeviceUnavailable("never prepared")


class _EchoPlugin:
    @harness.api.hookimpl
    def register_backends(self, register):
        register(_EchoBackend())


def test_the_kit_registers_a_plugin_object_for_one_block_only() -> None:
    from harness import testing
    from harness.plugins import get_registry

    with testing.registered(_EchoPlugin(), "echo") as registry:
        assert "echo_for_this_test" in registry.backends.names()
        assert "echo_for_this_test" in get_registry().backends.names()
    assert "echo_for_this_test" not in get_registry().backends.names()


def test_the_kit_refuses_a_plugin_with_a_misspelt_hook() -> None:
    from harness import testing
    from harness.plugins import get_registry

    class Misspelt:
        @harness.api.hookimpl
        def register_backend(self, register): ...

    with pytest.raises(Exception, match="register_backend"), testing.registered(Misspelt(), "m"):
        pass
    assert "m" not in {entry.plugin for entry in get_registry().backends}
