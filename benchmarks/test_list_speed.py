"""`harness list` with every first-party plugin installed: under 1.5 s.

Measured as a fresh process each round (what a user waits for), and checked against a bare
``python -c pass`` start-up in the same run, so the budget is about the harness's own cost.
"""

from __future__ import annotations

import subprocess
import sys
import time

LIST_BUDGET_S = 1.5


def _wall(argv: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, check=True, capture_output=True)
    return time.perf_counter() - start


def test_harness_list_wall_time(benchmark):
    interpreter = min(_wall([sys.executable, "-c", "pass"]) for _ in range(3))
    argv = [sys.executable, "-m", "harness", "list", "--json"]
    benchmark.pedantic(lambda: _wall(argv), rounds=5, iterations=1)
    best = benchmark.stats.stats.min
    benchmark.extra_info.update(
        {"list_seconds_best": best, "interpreter_startup_seconds": interpreter}
    )
    print(f"\nharness list: best {best:.3f} s (bare interpreter {interpreter:.3f} s)")
    assert best < LIST_BUDGET_S
