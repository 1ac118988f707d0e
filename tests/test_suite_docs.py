"""docs/suites.md documents every key a suite file may hold, each with the code's default, and
its example is a suite that loads."""

from __future__ import annotations

import re
import tomllib
from dataclasses import MISSING, fields
from pathlib import Path
from typing import Any

import pytest

from harness.errors import SuiteError
from harness.suite import (
    CELL_KEYS,
    LatencyConfig,
    ServingConfig,
    Suite,
    TrainingRecipe,
    parse_suite,
)

DOC = Path(__file__).resolve().parents[1] / "docs" / "suites.md"
SECTIONS: dict[str, tuple[str | None, type]] = {
    "Top level": (None, Suite),
    "`[training]`": ("training", TrainingRecipe),
    "`[latency]`": ("latency", LatencyConfig),
    "`[serving]`": ("serving", ServingConfig),
}
"""Heading of a table on the page -> (the TOML table it documents, the dataclass it fills)."""
NOT_FROM_THE_FILE = {"source"}
"""Suite fields the loader sets, which a suite file may not."""
FIRST_PARTY_MODELS = {"book_cnn": ("pool", "nopool")}
FIRST_PARTY_DATASETS = ("mnist", "cifar10")


def sections(text: str) -> dict[str, str]:
    """Heading text -> body, for every ``##`` and ``###`` heading."""
    parts = re.split(r"^(#{2,3} .+)$", text, flags=re.MULTILINE)
    return {h.lstrip("# ").strip(): body for h, body in zip(parts[1::2], parts[2::2], strict=True)}


def table_rows(body: str) -> list[list[str]]:
    """The cells of each table row whose first cell is in backticks."""
    return [
        [cell.strip() for cell in line.strip().strip("|").split("|")]
        for line in body.splitlines()
        if line.startswith("| `")
    ]


def key_of(cell: str) -> str:
    return re.fullmatch(r"`([\w.]+)`", cell).group(1)


def toml_value(cell: str) -> Any:
    """The value a default cell such as ```{ default = 1000 }``` writes, or MISSING if the cell
    is prose ("(required)", "one per physical core")."""
    match = re.fullmatch(r"`(.+)`", cell)
    return tomllib.loads(f"v = {match.group(1)}")["v"] if match else MISSING


def plain(value: Any) -> Any:
    """Tuples as lists, as TOML writes them."""
    return list(value) if isinstance(value, tuple) else value


@pytest.fixture(scope="module")
def page() -> dict[str, str]:
    return sections(DOC.read_text())


def documented_defaults(page: dict[str, str]) -> list[tuple[str | None, str, Any]]:
    return [
        (table, key_of(row[0]), toml_value(row[2]))
        for heading, (table, _) in SECTIONS.items()
        for row in table_rows(page[heading])
    ]


@pytest.mark.parametrize("heading", SECTIONS)
def test_every_key_the_parser_accepts_is_documented_and_no_other(
    heading: str, page: dict[str, str]
) -> None:
    _, cls = SECTIONS[heading]
    accepted = {f.name for f in fields(cls)} - NOT_FROM_THE_FILE
    documented = {key_of(row[0]) for row in table_rows(page[heading])}
    assert sorted(accepted - documented) == [], f"add these to {heading} in docs/suites.md"
    assert sorted(documented - accepted) == [], f"docs/suites.md {heading}: no such keys"


def test_a_field_the_page_leaves_out_is_one_a_suite_file_may_not_set() -> None:
    for key in NOT_FROM_THE_FILE:
        with pytest.raises(SuiteError, match=f"unknown key '{key}'"):
            parse_suite({"name": "x", key: "elsewhere"}, "test")


def test_each_documented_default_is_the_codes_and_the_parser_takes_it(
    page: dict[str, str],
) -> None:
    checked = 0
    for table, key, value in documented_defaults(page):
        if value is MISSING:
            continue
        data = {key: value} if table is None else {table: {key: value}}
        suite = parse_suite({"name": "x", **data}, f"docs/suites.md, {key}")
        parsed = getattr(suite if table is None else getattr(suite, table), key)
        code = getattr(Suite(name="x") if table is None else getattr(Suite(name="x"), table), key)
        assert (key, plain(parsed)) == (key, plain(code))
        checked += 1
    assert checked > 30


def test_name_is_documented_as_required_and_is(page: dict[str, str]) -> None:
    (row,) = [row for row in table_rows(page["Top level"]) if key_of(row[0]) == "name"]
    assert row[2] == "(required)"
    assert next(f for f in fields(Suite) if f.name == "name").default is MISSING


def test_the_step_budget_forms_are_listed_most_specific_first(page: dict[str, str]) -> None:
    body = page["Step budgets"]

    def written(form: str) -> str:
        return f'`"{form}"`' if "." in form else f"`{form}`"

    positions = [body.index(written(form)) for form in (*CELL_KEYS, "default")]
    assert positions == sorted(positions)


def test_the_example_loads_and_keys_its_budgets_as_the_page_says(page: dict[str, str]) -> None:
    example = re.search(r"```toml\n(.*?)```", page["An example"], flags=re.DOTALL).group(1)
    suite = parse_suite(tomllib.loads(example), "docs/suites.md example")
    suite.check_cell_keys(FIRST_PARTY_DATASETS, FIRST_PARTY_MODELS)
    steps = suite.training.steps_for
    assert steps("mnist", "pool", model="book_cnn") == 2000
    assert steps("cifar10", "nopool", model="book_cnn") == 400
    assert steps("cifar10", "nopool", model="another_cnn") == 200
    assert steps("cifar10", "pool", model="book_cnn") == 1000


def first_party_backend_options() -> dict[str, dict[str, Any]]:
    """Each backend of the harness's own plugins (``plugins/``) -> its declared options."""
    from harness.plugins import PluginHost

    packages = {path.parent.name for path in (DOC.parents[1] / "plugins").glob("*/__init__.py")}
    return {
        entry.obj.name: dict(entry.obj.options or {})
        for entry in PluginHost().registry().backends
        if type(entry.obj).__module__.split(".")[0] in packages
    }


def test_every_first_party_backends_options_are_documented_with_their_defaults(
    page: dict[str, str],
) -> None:
    declared = first_party_backend_options()
    assert {"keras", "onnxruntime"} <= set(declared)
    rows = table_rows(page["`[backend_options.NAME]`"])
    documented = {key_of(backend): {} for backend, *_ in rows}
    for backend, key, _, default, _ in rows:
        documented[key_of(backend)][key_of(key)] = toml_value(default)
    assert sorted(documented) == sorted(declared), "one table row per first-party backend option"
    for backend, options in declared.items():
        assert sorted(documented[backend]) == sorted(options), backend
        for key, option in options.items():
            if documented[backend][key] is not MISSING:
                assert (backend, key, documented[backend][key]) == (backend, key, option.default)
