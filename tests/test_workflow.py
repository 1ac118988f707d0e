"""The CI recipe (.github/workflows/benchmark.yml) is a valid workflow, and every harness command
in it is one this harness accepts: a user pastes it as it is."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from harness.cli import build_parser
from harness.planner import Shard, plan_cells, shard_plans
from harness.plugins import get_registry
from harness.suite import load_suite

WORKFLOW = Path(__file__).resolve().parents[1] / ".github" / "workflows" / "benchmark.yml"
ACTIONLINT = shutil.which("actionlint")
needs_actionlint = pytest.mark.skipif(
    ACTIONLINT is None, reason="actionlint is not installed (tox -e lint-ci installs it)"
)
EXPRESSIONS = {"matrix.shard": "1", "strategy.job-total": "2"}
"""Sample values of the workflow's expressions, to parse the commands that use them."""
COMMAND = re.compile(r"(?:^|\s)(?:[\w.-]+/)*harness (\w+)(.*?)(?: > .*| \|\| .*)?$")


def actionlint(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [ACTIONLINT, "-no-color", str(path)], capture_output=True, text=True, timeout=120
    )


@needs_actionlint
def test_the_workflow_passes_actionlint():
    result = actionlint(WORKFLOW)
    assert result.returncode == 0, result.stdout + result.stderr


@needs_actionlint
def test_actionlint_fails_a_broken_copy_of_the_workflow(tmp_path):
    broken = tmp_path / "benchmark.yml"
    text = WORKFLOW.read_text().replace("${{ matrix.shard }}/", "${{ matrix.shards }}/")
    broken.write_text(text)
    result = actionlint(broken)
    assert result.returncode != 0
    assert 'property "shards" is not defined' in result.stdout


def schema_check(path: Path) -> subprocess.CompletedProcess[str]:
    """The GitHub workflow schema that check-jsonschema vendors: no network needed."""
    command = [sys.executable, "-m", "check_jsonschema"]
    command += ["--builtin-schema", "vendor.github-workflows", str(path)]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def test_the_workflow_matches_the_github_workflow_schema():
    result = schema_check(WORKFLOW)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_schema_check_fails_a_broken_copy_of_the_workflow(tmp_path):
    broken = tmp_path / "benchmark.yml"
    broken.write_text(WORKFLOW.read_text().replace("runs-on:", "runs_on:", 1))
    result = schema_check(broken)
    assert result.returncode != 0
    assert "'runs-on' is a required property" in result.stdout


def workflow_env(text: str) -> dict[str, str]:
    """The top-level ``env:`` block's values."""
    block = text.split("\nenv:\n", 1)[1].split("\n\n", 1)[0]
    return dict(re.findall(r"^  (\w+): \"?([^\s\"#]+)", block, flags=re.MULTILINE))


def harness_commands(text: str) -> list[list[str]]:
    """Every ``harness`` command line of the workflow, its expressions and variables filled."""
    env = workflow_env(text)
    commands = []
    for line in text.splitlines():
        match = COMMAND.search(line.strip().removeprefix("run: "))
        if not match:
            continue
        command = f"{match[1]}{match[2]}"
        for expression in re.findall(r"\$\{\{\s*([^}]+?)\s*\}\}", command):
            assert expression in EXPRESSIONS, f"no sample value for ${{{{ {expression} }}}}"
        command = re.sub(r"\$\{\{\s*([^}]+?)\s*\}\}", lambda m: EXPRESSIONS[m[1]], command)
        command = re.sub(r"\$(\w+)", lambda m: env[m[1]], command)
        commands.append(shlex.split(command.replace("shards/*", "shards/a shards/b")))
    return commands


def test_every_harness_command_of_the_workflow_parses():
    commands = harness_commands(WORKFLOW.read_text())
    assert [argv[0] for argv in commands] == ["run", "merge", "compare", "ab"]
    parser = build_parser()
    for argv in commands:
        parser.parse_args(argv)  # exits 2 (fails the test) on a flag this harness lacks


def test_the_matrix_splits_the_workflows_suite():
    text = WORKFLOW.read_text()
    (run,) = [
        build_parser().parse_args(argv) for argv in harness_commands(text) if argv[0] == "run"
    ]
    Shard.parse(run.shard)
    matrix = [int(n) for n in re.search(r"shard: \[([\d, ]+)\]", text)[1].split(",")]
    assert matrix == list(range(1, len(matrix) + 1))
    plans = plan_cells(load_suite(run.suite), get_registry())
    shards = [shard_plans(plans, index, len(matrix)) for index in matrix]
    assert sum(len(shard) for shard in shards) == len(plans)
