"""What the report says, built once and rendered twice (Markdown and HTML).

The content makes the book's point with measured numbers: per dataset, pooling against no pooling
in parameters, MACs, accuracy and latency; each model's top confusions; what failed and why; and
the environment the numbers come from.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from harness.report.confusions import top_confusions
from harness.report.frames import RunTables, best_peak_gflops, peak_measurements
from harness.report.plots import MAX_BATCH_SIZES_SHOWN, Plot, spread


@dataclass(frozen=True)
class Heading:
    level: int
    text: str


@dataclass(frozen=True)
class Paragraph:
    text: str


@dataclass(frozen=True)
class Bullets:
    items: tuple[str, ...]


@dataclass(frozen=True)
class Table:
    headers: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]


@dataclass(frozen=True)
class Figure:
    plot: Plot


Block = Heading | Paragraph | Bullets | Table | Figure


def _missing(value: Any) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and value != value)


def fmt_int(value: Any) -> str:
    return "-" if _missing(value) else f"{int(value):,}"


def fmt_percent(value: Any) -> str:
    return "-" if _missing(value) else f"{100 * float(value):.2f}%"


def fmt_ms(value: Any) -> str:
    if _missing(value):
        return "-"
    value = float(value)
    return f"{value:#.3g}" if value < 100 else f"{value:,.0f}"


def fmt_float(value: Any, digits: int = 3) -> str:
    return "-" if _missing(value) else f"{float(value):.{digits}g}"


def fmt_bytes(value: Any) -> str:
    return "-" if _missing(value) else f"{int(value) / 1e6:,.1f} MB"


def fmt_gib(value: Any) -> str:
    return "-" if _missing(value) else f"{int(value) / 2**30:.1f} GiB"


def _first_line(text: Any, limit: int = 160) -> str:
    if _missing(text):
        return "-"
    line = str(text).strip().splitlines()[0] if str(text).strip() else "-"
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _runs_section(tables: RunTables) -> list[Block]:
    blocks: list[Block] = []
    for run in tables.runs:
        suite = run.get("suite") or {}
        env = run.get("environment") or {}
        libraries = env.get("libraries") or {}
        threads = {k: v for k, v in (env.get("threads") or {}).items() if v is not None}
        gpus = [g.get("name") for g in env.get("gpus") or [] if g.get("name")]
        finished = run.get("finished")
        wall = run.get("wall_seconds")
        state = (
            f"finished {finished}, {wall:.0f} s" if finished and wall is not None else "unfinished"
        )
        phases = run.get("phases") or {}
        items = [
            f"suite: {suite.get('name', '-')}, started {run.get('started', '-')}, {state}",
            f"CPU: {env.get('cpu_model', '-')} ({env.get('physical_cores', '-')} cores, "
            f"{env.get('logical_cores', '-')} threads), RAM {fmt_gib(env.get('ram_bytes'))}",
            f"GPU: {', '.join(gpus) if gpus else 'none'}",
            _peak_line(run),
            f"OS: {env.get('os', '-')}, Python {env.get('python', '-')}",
            "libraries: " + ", ".join(f"{k} {v}" for k, v in sorted(libraries.items()) if v),
            "thread settings: "
            + (", ".join(f"{k}={v}" for k, v in sorted(threads.items())) or "library defaults"),
            f"harness {run.get('harness_version', '-')} at commit {env.get('git_sha') or '-'}",
        ]
        if phases:
            items.append(
                "time per phase: "
                + ", ".join(f"{k} {v:.1f} s" for k, v in phases.items() if v is not None)
            )
        blocks += [Heading(3, f"Run {run['run_id']}"), Bullets(tuple(items))]
    return blocks


def _peak_line(run: dict[str, Any]) -> str:
    best = best_peak_gflops(run)
    if best is None:
        return "fp32 GEMM peak: not measured"
    peaks = ", ".join(f"{when} {gflops:.1f}" for when, gflops in peak_measurements(run).items())
    engine = (run.get("gemm_peak") or {}).get("engine", "-")
    return f"fp32 GEMM peak: {best:.1f} GFLOP/s ({engine}; measured at {peaks})"


def _models_table(rows: pd.DataFrame, many_runs: bool) -> Table:
    keys = ["run_id", "model", "variant"]
    models = rows.drop_duplicates(keys).sort_values(["model", "variant", "run_id"])
    headers = ("model", "variant", "params", "conv params", "dense params", "MACs/image")
    headers += ("weights", ".keras", "accuracy (Keras)") + (("run",) if many_runs else ())
    body = []
    for row in models.itertuples(index=False):
        cells = (row.model, row.variant, fmt_int(row.params_total), fmt_int(row.params_conv))
        cells += (fmt_int(row.params_dense), fmt_int(row.macs_per_image))
        cells += (fmt_bytes(row.weight_bytes), fmt_bytes(row.keras_bytes))
        cells += (fmt_percent(row.reference_accuracy),) + ((row.run_id,) if many_runs else ())
        body.append(cells)
    return Table(headers, tuple(body))


def _pool_ratios(rows: pd.DataFrame) -> list[str]:
    """One sentence per model holding both variants: what dropping pooling costs."""
    lines = []
    for (model, run_id), part in rows.groupby(["model", "run_id"]):
        by_variant = part.drop_duplicates("variant").set_index("variant")
        if not {"pool", "nopool"} <= set(by_variant.index):
            continue
        pool, nopool = by_variant.loc["pool"], by_variant.loc["nopool"]
        if _missing(pool.params_dense) or _missing(nopool.params_dense) or not pool.params_dense:
            continue
        text = (
            f"{model}: without pooling the dense layers hold {fmt_int(nopool.params_dense)} "
            f"weights against {fmt_int(pool.params_dense)} with pooling "
            f"(nopool/pool = {nopool.params_dense / pool.params_dense:.1f}x)"
        )
        if not _missing(pool.macs_per_image) and not _missing(nopool.macs_per_image):
            ratio = nopool.macs_per_image / pool.macs_per_image if pool.macs_per_image else 0
            text += f"; MACs per image {ratio:.1f}x"
        if not _missing(pool.reference_accuracy) and not _missing(nopool.reference_accuracy):
            text += (
                f"; accuracy {fmt_percent(nopool.reference_accuracy)} without pooling, "
                f"{fmt_percent(pool.reference_accuracy)} with"
            )
        lines.append(text + (f" (run {run_id})" if rows["run_id"].nunique() > 1 else "") + ".")
    return lines


def _backends_table(rows: pd.DataFrame, many_runs: bool) -> tuple[Table, bool, str]:
    """One row per cell; p50 per batch size in columns; throughput at the largest batch; what
    the worker's process held in memory (and on the GPU, where a cell ran on one).

    Also returns whether any latency is unstable, and a note when not every batch size fits.
    """
    measured = rows[rows["status"] == "ok"]
    all_sizes = sorted(int(b) for b in measured["batch_size"].dropna().unique())
    batch_sizes = spread(all_sizes, MAX_BATCH_SIZES_SHOWN)
    keys = ["model", "variant", "backend", "device", "run_id"]
    headers = ("model", "variant", "backend", "device", "accuracy", "top-1 agreement")
    headers += ("max |diff|", *(f"p50 ms b={b}" for b in batch_sizes))
    headers += (f"images/s b={batch_sizes[-1]}",) if batch_sizes else ()
    headers += ("worker memory",)
    on_gpu = measured["peak_gpu_memory_bytes"].notna().any()
    headers += ("GPU memory",) if on_gpu else ()
    headers += ("run",) if many_runs else ()
    body = []
    any_unstable = False
    for key, cell in measured.groupby(keys, sort=True):
        by_batch = cell.set_index("batch_size")
        first = cell.iloc[0]
        values = (*key[:4], fmt_percent(first.test_accuracy))
        values += (fmt_percent(first.parity_top1_agreement), fmt_float(first.parity_max_abs_diff))
        for b in batch_sizes:
            if b in by_batch.index:
                flag = by_batch.loc[b, "unstable"]
                unstable = not _missing(flag) and bool(flag)
                any_unstable |= unstable
                values += (fmt_ms(by_batch.loc[b, "p50_ms"]) + ("*" if unstable else ""),)
            else:
                values += ("-",)
        if batch_sizes:
            last = batch_sizes[-1]
            throughput = by_batch.loc[last, "throughput_ips"] if last in by_batch.index else None
            values += (fmt_int(None if _missing(throughput) else round(throughput)),)
        values += (fmt_gib(first.peak_rss_bytes),)
        values += (fmt_gib(first.peak_gpu_memory_bytes),) if on_gpu else ()
        body.append(values + ((key[4],) if many_runs else ()))
    note = ""
    if len(batch_sizes) < len(all_sizes):
        note = f"p50 for {len(batch_sizes)} of {len(all_sizes)} batch sizes; summary.csv has all."
    return Table(headers, tuple(body)), any_unstable, note


def _confusions(tables: RunTables, dataset: str, many_runs: bool) -> list[str]:
    items = []
    for model in sorted(
        (m for m in tables.models if m.get("dataset") == dataset),
        key=lambda m: (m.get("model"), m.get("variant"), m.get("run_id")),
    ):
        found = top_confusions(model.get("confusion") or [], model.get("class_names") or [])
        where = f" (run {model['run_id']})" if many_runs else ""
        mistakes = "; ".join(str(c) for c in found) or "no mistakes"
        items.append(f"{model.get('model')} {model.get('variant')}{where}: {mistakes}")
    return items


def _failures(summary: pd.DataFrame) -> Table | None:
    failed = summary[summary["status"] != "ok"].drop_duplicates(
        ["run_id", "dataset", "model", "variant", "backend", "device"]
    )
    if failed.empty:
        return None
    body = tuple(
        (r.dataset, r.model, r.variant, r.backend, r.device, r.status, _first_line(r.error))
        for r in failed.itertuples(index=False)
    )
    headers = ("dataset", "model", "variant", "backend", "device", "status", "error")
    return Table(headers, body)


def report_document(tables: RunTables, plots: list[Plot]) -> list[Block]:
    summary = tables.summary
    many_runs = len(tables.runs) > 1
    run_ids = ", ".join(run["run_id"] for run in tables.runs) or "-"
    ok = int((summary["status"] == "ok").sum())
    blocks: list[Block] = [
        Heading(1, "Benchmark report"),
        Paragraph(
            f"Run{'s' if many_runs else ''} {run_ids}: {len(summary)} rows "
            f"(dataset x model x variant x backend x device x batch size), {ok} measured."
        ),
    ]
    for dataset in sorted(summary["dataset"].dropna().unique()):
        rows = summary[summary["dataset"] == dataset]
        blocks += [Heading(2, dataset), _models_table(rows, many_runs)]
        ratios = _pool_ratios(rows)
        if ratios:
            blocks.append(Bullets(tuple(ratios)))
        table, any_unstable, note = _backends_table(rows, many_runs)
        if table.rows:
            blocks += [Paragraph("Accuracy, parity with Keras and latency per backend:"), table]
            if note:
                blocks.append(Paragraph(note))
            if any_unstable:
                blocks.append(Paragraph("* unstable: latency CV of 10% or more."))
        confusions = _confusions(tables, dataset, many_runs)
        if confusions:
            blocks += [Paragraph("Top confusions (Keras reference):"), Bullets(tuple(confusions))]
    failures = _failures(summary)
    if failures is not None:
        blocks += [Heading(2, "Cells that did not measure"), failures]
    if plots:
        blocks.append(Heading(2, "Plots"))
        blocks += [Figure(plot) for plot in plots]
    blocks += [Heading(2, "Environment"), *_runs_section(tables)]
    return blocks
