"""Installed beside the harness, the plugins take part in a real run: cells, report and all."""

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest


@pytest.mark.slow
def test_smoke_run_reports_the_mlp_on_litert_beside_keras(tmp_path: Path) -> None:
    command = [
        sys.executable, "-m", "harness", "run", "--suite", "smoke",
        "--dataset", "mnist", "--model", "mlp", "--variant", "dense256", "--steps", "10",
        "--backend", "keras", "--backend", "litert", "--out", str(tmp_path), "--no-progress",
    ]  # fmt: skip
    env = {**os.environ, "HARNESS_CACHE_DIR": str(tmp_path / "cache")}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    (run_dir,) = (path for path in tmp_path.iterdir() if path.name.endswith("-smoke"))
    summary = pd.read_csv(run_dir / "summary.csv")
    cells = summary[["model", "backend", "status"]].drop_duplicates()
    assert sorted(map(tuple, cells.values)) == [("mlp", "keras", "ok"), ("mlp", "litert", "ok")]
    litert = summary[summary.backend == "litert"]
    assert (litert.parity_top1_agreement >= 0.999).all()
    assert "| mlp   | dense256 | litert  |" in (run_dir / "report.md").read_text()
