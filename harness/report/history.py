"""A cell's latency and accuracy over many runs, machine by machine (``harness history``).

Runs from different machines are never drawn on one line: a change of CPU model or instruction
set changes the kernels the runtimes pick, so a step between two such runs says nothing about
the code. Each machine (CPU model and ISA features) gets its own section, and within it runs are
ordered by start time, then git SHA.

Every p50 carries the 95% interval of its run's median from the raw samples (binomial order
statistics): how precisely that run pinned its own median, not whether another run differs,
since a run's samples share its moment on the machine. Whether a step between two consecutive
runs is a change is judged as ``harness compare`` judges it, from the runs' trials
(:func:`harness.verdict.judge_unpaired`, Holm over the rows of each pair of runs), and marked.
"""

from __future__ import annotations

import base64
import html
import io
import itertools
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from harness.errors import DataError
from harness.report.atomic import atomic_path, write_text
from harness.report.frames import RunTables, build_tables, trial_logs
from harness.report.plots import log_axis

if TYPE_CHECKING:
    from harness.verdict import LatencyVerdict, RunsJudgement

HISTORY_HTML = "history.html"
HISTORY_PARQUET = "history.parquet"
CELL = ["dataset", "model", "variant", "backend", "device", "batch_size"]
HISTORY_COLUMNS = [
    *("machine", "run_id", "started", "git_sha", *CELL, "status"),
    *("p50_ms", "p50_low_ms", "p50_high_ms", "test_accuracy", "iterations"),
    *("verdict", "change", "change_low", "change_high", "noise_floor"),
]
"""One row per run x cell x batch size; ``p50_low_ms``/``p50_high_ms`` bound the run's median
(95%); ``verdict`` and ``change`` (relative, with its interval) judge the step from the
previous run of the same machine (``first``: none; ``untested``: no trials on both sides)."""

MARKS = {"regression": "\u25b2", "improvement": "\u25bc"}
MOST_RUN_LABELS = {"latency": 8, "accuracy": 5}
"""Run labels an axis of the history figure can hold side by side (the latency panel is the
wider); with more runs every k-th is labelled, each run keeping its tick."""
"""How the page marks a step that the trials call a change (up: slower, down: faster)."""


def find_runs(paths: list[Path]) -> list[Path]:
    """Run folders among ``paths``: each one itself, or for a folder of runs, its run folders."""
    from harness.journal import JOURNAL_NAME

    found: list[Path] = []
    for path in paths:
        if (path / JOURNAL_NAME).is_file():
            found.append(path)
            continue
        inside = sorted(p.parent for p in path.glob(f"*/{JOURNAL_NAME}"))
        if not inside:
            raise DataError(f"{path}: neither a run folder nor a folder of runs ({JOURNAL_NAME})")
        found += inside
    return list(dict.fromkeys(found))


def machine_key(environment: dict[str, Any] | None) -> str:
    """The machine a run's latency belongs to: CPU model and ISA features."""
    env = environment or {}
    isa = (env.get("cpu") or {}).get("isa")
    features = "ISA not recorded" if isa is None else ("ISA " + " ".join(isa) if isa else "no ISA")
    return f"{env.get('cpu_model') or 'unknown CPU'} | {features}"


def median_interval(samples_ns: np.ndarray, z: float = 1.96) -> tuple[float, float]:
    """A 95% interval for the median, in ms, from order statistics (no distribution assumed)."""
    ordered = np.sort(samples_ns)
    n = len(ordered)
    half = z * math.sqrt(n) / 2
    low = max(math.floor(n / 2 - half), 0)
    high = min(math.ceil(n / 2 + half), n - 1)
    return ordered[low] / 1e6, ordered[high] / 1e6


def _history_rows(tables: RunTables) -> pd.DataFrame:
    machines = {run["run_id"]: machine_key(run.get("environment")) for run in tables.runs}
    summary = tables.summary
    rows = pd.DataFrame(
        {
            "machine": summary["run_id"].map(machines),
            "run_id": summary["run_id"],
            "started": summary["timestamp"],
            "git_sha": summary["git_sha"],
            **{name: summary[name] for name in CELL},
            "status": summary["status"],
            "p50_ms": summary["p50_ms"],
            "test_accuracy": summary["test_accuracy"],
            "iterations": summary["iterations"],
        }
    )
    keys = ["run_id", *CELL]
    bounds = [
        (*key, *median_interval(part["latency_ns"].to_numpy()))
        for key, part in tables.samples.groupby(keys, observed=True)
    ]
    intervals = pd.DataFrame(bounds, columns=[*keys, "p50_low_ms", "p50_high_ms"])
    intervals = intervals.astype({name: rows[name].dtype for name in keys})
    return rows.merge(intervals, on=keys, how="left")


def _row_steps(judgement: RunsJudgement) -> dict[Any, LatencyVerdict]:
    """Each row's step: its own verdict when it moved against the run's other rows, else the
    whole run's when all rows moved together (compare's ``all rows`` line), else its own."""
    level = judgement.run_level
    moved = ("regression", "improvement")
    if level is None or level.verdict not in moved:
        return judgement.rows
    return {
        key: verdict if verdict.verdict in moved else level
        for key, verdict in judgement.rows.items()
    }


def _judge_steps(table: pd.DataFrame, trials: dict[tuple, np.ndarray]) -> pd.DataFrame:
    """Each row's verdict against the previous run of its machine, from the trials."""
    from harness.verdict import MIN_TRIALS, judge_runs

    table = table.assign(
        verdict="first", change=np.nan, change_low=np.nan, change_high=np.nan, noise_floor=np.nan
    )
    for _, rows in table.groupby("machine", sort=False):
        run_ids = list(dict.fromkeys(rows["run_id"]))
        for previous, current in itertools.pairwise(run_ids):
            here = rows[rows["run_id"] == current]
            base, new = {}, {}
            for index, row in here.iterrows():
                cell = (*(row[name] for name in CELL[:-1]), int(row["batch_size"]))
                left, right = trials.get((previous, *cell)), trials.get((current, *cell))
                table.loc[index, "verdict"] = "untested"
                if (
                    left is not None
                    and right is not None
                    and min(left.size, right.size) >= (MIN_TRIALS)
                ):
                    base[index], new[index] = left, right
            for index, verdict in _row_steps(judge_runs(base, new, threshold=0.10)).items():
                table.loc[index, "verdict"] = verdict.verdict
                table.loc[index, ["change", "change_low", "change_high", "noise_floor"]] = [
                    verdict.change,
                    verdict.low,
                    verdict.high,
                    verdict.noise_floor,
                ]
    return table


def history_table(run_dirs: list[Path]) -> pd.DataFrame:
    """Every run's rows, ordered by machine, start time, git SHA and cell."""
    from harness.journal import JOURNAL_NAME, Journal

    frames = []
    trials: dict[tuple, np.ndarray] = {}
    for run_dir in run_dirs:
        journal = run_dir / JOURNAL_NAME
        tables = build_tables(Journal(journal).records(), journal)
        frames.append(_history_rows(tables))
        trials |= trial_logs(tables.trials)
    if not frames:
        return pd.DataFrame(columns=HISTORY_COLUMNS)
    table = pd.concat(frames, ignore_index=True)
    table = table.drop_duplicates(["run_id", *CELL], keep="last")
    order = ["machine", "started", "git_sha", "run_id", *CELL]
    table = table.sort_values(order, kind="stable", ignore_index=True)
    return _judge_steps(table, trials)[HISTORY_COLUMNS]


def _run_label(run: pd.Series) -> str:
    sha = run["git_sha"][:7] if isinstance(run["git_sha"], str) else "-"
    return f"{str(run['started'])[:16].replace('T', ' ')}\n{sha}"


def _figure_png(rows: pd.DataFrame, runs: pd.DataFrame) -> str:
    """Per dataset, p50 (log axis, 95% interval bars) and accuracy of each cell over the runs,
    as a data URI."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    position = {run_id: i for i, run_id in enumerate(runs["run_id"])}
    measured = rows[rows["status"] == "ok"].dropna(subset=["p50_ms"])
    datasets = sorted(measured["dataset"].unique()) or ["-"]
    figure, axes = plt.subplots(
        len(datasets),
        2,
        figsize=(14, 0.6 + 4.2 * len(datasets)),
        gridspec_kw={"width_ratios": [3, 2]},
        squeeze=False,
    )
    labels = [_run_label(run) for _, run in runs.iterrows()]
    colors = plt.get_cmap("tab20").colors
    for (latency, accuracy), dataset in zip(axes, datasets, strict=True):
        part = measured[measured["dataset"] == dataset]
        batch_sizes = sorted(part["batch_size"].unique())
        for k, (key, line) in enumerate(part.groupby(CELL[1:], sort=True)):
            x = line["run_id"].map(position).to_numpy(dtype=float)
            p50 = line["p50_ms"].to_numpy(dtype=float)
            low = p50 - line["p50_low_ms"].to_numpy(dtype=float, na_value=np.nan)
            high = line["p50_high_ms"].to_numpy(dtype=float, na_value=np.nan) - p50
            style = {
                "color": colors[k % len(colors)],
                "marker": "os^Dv<>"[batch_sizes.index(key[-1]) % 7],
            }
            label = "/".join(str(part) for part in key[:-1]) + f" b={key[-1]}"
            latency.errorbar(x, p50, yerr=[low, high], capsize=2, label=label, **style)
            if key[-1] == batch_sizes[0]:
                percent = 100 * line["test_accuracy"].to_numpy(dtype=float, na_value=np.nan)
                accuracy.plot(x, percent, **style)
        if not part.empty:
            latency.set_yscale("log")
            low, high = part["p50_ms"].min(), part["p50_ms"].max()
            latency.set_ylim(low / 1.5, high * 1.5)
            log_axis(latency.yaxis, low, high)
        for ax, panel in ((latency, "latency"), (accuracy, "accuracy")):
            shown = thinned(labels, MOST_RUN_LABELS[panel])
            ax.set_xticks(range(len(runs)), shown, fontsize=7, rotation=30, ha="right")
            ax.set_xlim(-0.5, len(runs) - 0.5)
            ax.grid(color="#ddd", linewidth=0.6)
        latency.set_title(f"{dataset}: p50 per call", fontsize=10)
        latency.set_ylabel("ms (log scale; bar: 95% interval)")
        accuracy.set_title(f"{dataset}: test accuracy (smallest batch size's cells)", fontsize=10)
        accuracy.set_ylabel("%")
        handles, names = latency.get_legend_handles_labels()
        accuracy.legend(handles, names, fontsize=7, loc="upper left", bbox_to_anchor=(1.03, 1.0))
    height = figure.get_figheight()
    figure.subplots_adjust(
        left=0.06, right=0.76, top=1 - 0.4 / height, bottom=1.0 / height, hspace=0.55, wspace=0.2
    )
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=80)
    plt.close(figure)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def thinned(labels: list[str], most: int) -> list[str]:
    """Every k-th label from the first, blanks between, so that at most ``most`` labels share
    an axis and none prints over another (the table under the figure names every run)."""
    step = max(1, math.ceil(len(labels) / most))
    return [label if index % step == 0 else "" for index, label in enumerate(labels)]


def _cell_table(rows: pd.DataFrame, runs: pd.DataFrame) -> str:
    """Per cell, one column per run: p50 [interval] and accuracy."""
    heads = "".join(
        f"<th>{html.escape(_run_label(r)).replace(chr(10), '<br>')}</th>"
        for _, r in runs.iterrows()
    )
    body = []
    for key, line in rows.groupby(CELL, sort=True):
        by_run = line.set_index("run_id")
        cells = []
        for run_id in runs["run_id"]:
            if run_id not in by_run.index:
                cells.append("<td>-</td>")
                continue
            row = by_run.loc[run_id]
            if row["status"] != "ok" or pd.isna(row["p50_ms"]):
                cells.append(f"<td>{html.escape(str(row['status']))}</td>")
                continue
            interval = ""
            if pd.notna(row["p50_low_ms"]):
                interval = f" [{row['p50_low_ms']:.3g}, {row['p50_high_ms']:.3g}]"
            accuracy = (
                "" if pd.isna(row["test_accuracy"]) else f"<br>{100 * row['test_accuracy']:.2f}%"
            )
            step = ""
            if row["verdict"] in MARKS:
                change = (
                    f"{100 * row['change']:+.0f}% [{100 * row['change_low']:+.0f}, "
                    f"{100 * row['change_high']:+.0f}]"
                )
                step = f"<br><b>{MARKS[row['verdict']]} {change}</b>"
            cells.append(f"<td>{row['p50_ms']:.3g}{interval}{step}{accuracy}</td>")
        name = html.escape("/".join(str(k) for k in key[:5]) + f" b={key[5]}")
        body.append(f"<tr><th>{name.replace('/', '/<wbr>')}</th>{''.join(cells)}</tr>")
    # One column per run never fits a narrow window for long: the table scrolls in its own box
    # with the cell names held at its left edge, and the page stays as wide as the window.
    head = f"<thead><tr><th>cell</th>{heads}</tr></thead>"
    return f'<div class="table"><table>{head}<tbody>{"".join(body)}</tbody></table></div>'


_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; padding: 0 1em; max-width: 80em;
  color: #222; overflow-wrap: break-word; }
.table { overflow-x: auto; margin: 0.5em 0 1em; }
table { border-collapse: collapse; font-size: 0.85em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.5em; text-align: right; }
thead th { background: #f3f3f3; }
tbody th { text-align: left; font-weight: normal; background: #fff; min-width: 9em; }
tr > th:first-child { position: sticky; left: 0; }
img { max-width: 100%; display: block; margin: 1em 0; }
"""


def render_history_html(table: pd.DataFrame) -> str:
    """One self-contained page: per machine, a figure and a table over its runs."""
    sections = []
    for machine, rows in table.groupby("machine", sort=True):
        runs = rows.drop_duplicates("run_id")[["run_id", "started", "git_sha"]]
        sections.append(
            f"<h2>{html.escape(str(machine))}</h2>"
            f"<p>{len(runs)} run{'s' * (len(runs) != 1)}, ordered by start time and git SHA. "
            "Each cell: p50 ms per call [95% interval of the run's median], a mark where the "
            "trials call the step from the previous run a change (\u25b2 slower, \u25bc faster: "
            "change [interval], as <code>harness compare</code> judges it), then accuracy.</p>"
            f'<img alt="p50 and accuracy over runs" src="{_figure_png(rows, runs)}">'
            + _cell_table(rows, runs)
        )
    machines = table["machine"].nunique()
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>Benchmark history</title><style>{_STYLE}</style></head>\n<body>\n"
        "<h1>Benchmark history</h1>"
        f"<p>{table['run_id'].nunique()} runs on {machines} machine{'s' * (machines != 1)} "
        "(CPU model and ISA features); runs from different machines are never compared.</p>\n"
        + "\n".join(sections)
        + "\n</body></html>\n"
    )


def write_history(paths: list[Path], output: Path) -> list[Path]:
    """``history.parquet`` and ``history.html`` in ``output`` for the runs among ``paths``."""
    table = history_table(find_runs(paths))
    parquet = output / HISTORY_PARQUET
    with atomic_path(parquet) as temporary:
        table.to_parquet(temporary, index=False)
    return [parquet, write_text(output / HISTORY_HTML, render_history_html(table))]
