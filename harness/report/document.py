"""What the report says, built once and rendered twice (Markdown and HTML).

The content makes the book's point with measured numbers: first the machine and software the
numbers come from, then per dataset pooling against no pooling in parameters, MACs, accuracy,
parity with the reference, latency with its spread and efficiency; each model's top confusions;
what failed and why. Every flag is explained where it is shown.
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


def fmt_percent(value: Any, digits: int = 2) -> str:
    return "-" if _missing(value) else f"{100 * float(value):.{digits}f}%"


def fmt_share(value: Any) -> str:
    """A fraction as a percentage with two significant digits (0.0042 -> 0.42%, 0.31 -> 31%)."""
    if _missing(value):
        return "-"
    percent = 100 * float(value)
    return f"{percent:.2g}%" if percent < 10 else f"{percent:.0f}%"


def fmt_number(value: Any) -> str:
    """Three significant digits, no exponent, no trailing point: 0.0123, 4.50, 100, 12,345."""
    if _missing(value):
        return "-"
    value = float(value)
    if abs(float(f"{value:.3g}")) >= 100:
        return f"{value:,.0f}"
    return f"{value:#.3g}"


def fmt_float(value: Any, digits: int = 3) -> str:
    return "-" if _missing(value) else f"{float(value):.{digits}g}"


def fmt_bytes(value: Any) -> str:
    return "-" if _missing(value) else f"{int(value) / 1e6:,.1f} MB"


def fmt_gib(value: Any) -> str:
    return "-" if _missing(value) else f"{int(value) / 2**30:.1f} GiB"


def fmt_size(value: Any) -> str:
    """Bytes in the largest binary unit that keeps a whole number: 48 KiB, 2 MiB, 1.5 GiB."""
    if _missing(value):
        return "-"
    size = float(value)
    for unit in ("B", "KiB", "MiB"):
        if size < 1024:
            return f"{size:.3g} {unit}"
        size /= 1024
    return f"{size:.3g} GiB"


def _first_line(text: Any, limit: int = 160) -> str:
    if _missing(text):
        return "-"
    line = str(text).strip().splitlines()[0] if str(text).strip() else "-"
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _cpu_line(env: dict[str, Any]) -> str:
    cpu = env.get("cpu") or {}
    identity = " ".join(
        f"{name} {cpu[key]}" if name else str(cpu[key])
        for name, key in (("", "vendor"), ("family", "family"), ("model", "model"))
        if cpu.get(key) is not None
    )
    if cpu.get("stepping") is not None:
        identity += f" stepping {cpu['stepping']}"
    if cpu.get("virtualized"):
        identity += ", virtual machine" + (
            f" ({cpu['hypervisor']})" if cpu.get("hypervisor") else ""
        )
    return (
        f"CPU: {env.get('cpu_model') or '-'}"
        + (f" ({identity})" if identity else "")
        + f"; {env.get('physical_cores', '-')} cores, {env.get('logical_cores', '-')} threads; "
        f"RAM {fmt_gib(env.get('ram_bytes'))}"
    )


def _isa_line(env: dict[str, Any]) -> str:
    isa = (env.get("cpu") or {}).get("isa")
    if isa is None:
        return "ISA features: not recorded"
    return "ISA features: " + (", ".join(isa) or "none of those the harness looks for")


_PHASE_NAMES = {"latency": "latency phase", "trials": "trial phase"}


def machine_load_line(machine_load: dict[str, Any] | None) -> str:
    """What other processes and the hypervisor took of the CPUs while each phase measured: a
    latency from a loaded machine is not comparable with one from a quiet machine."""
    if not machine_load:
        return "machine load while measuring: not recorded"
    parts = []
    for phase, load in machine_load.items():
        name = _PHASE_NAMES.get(phase, phase)
        if not load or not load.get("seconds"):
            parts.append(f"{name} not measured")
        elif load.get("foreign_cpu") is None:
            parts.append(f"{name} unknown (no /proc/stat)")
        else:
            parts.append(
                f"{name} {fmt_percent(load['foreign_cpu'], 1)} of the CPUs to other processes, "
                f"{fmt_percent(load['steal'], 1)} stolen by the hypervisor"
            )
    return "machine load while measuring: " + "; ".join(parts)


def _machine_items(run: dict[str, Any]) -> list[str]:
    """Where and with what a run measured: the lines a reader needs before any number."""
    suite = run.get("suite") or {}
    env = run.get("environment") or {}
    libraries = env.get("libraries") or {}
    threads = {k: v for k, v in (env.get("threads") or {}).items() if v is not None}
    gpus = [g.get("name") for g in env.get("gpus") or [] if g.get("name")]
    caches = {k: v for k, v in ((env.get("cpu") or {}).get("caches") or {}).items() if v}
    finished = run.get("finished")
    wall = run.get("wall_seconds")
    state = f"finished {finished}, {wall:.0f} s" if finished and wall is not None else "unfinished"
    shard = f", {_shard_name(run['shard'])}" if run.get("shard") else ""
    items = [
        f"suite: {suite.get('name', '-')}{shard}, started {run.get('started', '-')}, {state}",
        _cpu_line(env),
        _isa_line(env),
    ]
    if caches:
        items.append("caches: " + ", ".join(f"{k} {fmt_size(v)}" for k, v in caches.items()))
    items += [
        f"GPU: {', '.join(gpus) if gpus else 'none'}",
        _peak_line(run),
        "libraries: " + (", ".join(f"{k} {v}" for k, v in sorted(libraries.items()) if v) or "-"),
        "thread settings: "
        + (", ".join(f"{k}={v}" for k, v in sorted(threads.items())) or "library defaults"),
        f"OS: {env.get('os', '-')}, Python {env.get('python', '-')}",
        f"harness {run.get('harness_version', '-')} at commit {env.get('git_sha') or '-'}",
        machine_load_line(run.get("machine_load")),
    ]
    phases = run.get("phases") or {}
    if phases:
        items.append(
            "time per phase: "
            + ", ".join(f"{k} {v:.1f} s" for k, v in phases.items() if v is not None)
        )
    return items


def _shard_name(shard: dict[str, Any]) -> str:
    return f"shard {shard['index']} of {shard['count']}"


def _shards_note(runs: list[dict[str, Any]]) -> str:
    """Which part of its suite a shard's report holds, or which shards a merge joined and which
    it lacks: a reader must not take a part of the suite for all of it."""
    shards = sorted(
        (run["shard"]["index"], run["shard"]["count"]) for run in runs if run.get("shard")
    )
    if not shards:
        return ""
    suite = next((run.get("suite") or {}).get("name", "-") for run in runs if run.get("shard"))
    index, count = shards[0]
    if len(runs) == 1:
        return (
            f"This run is shard {index} of {count} of suite {suite} (harness run --shard "
            f"{index}/{count}): it holds only that shard's models; harness merge joins the "
            "shards into one report."
        )
    joined = ", ".join(f"{i}/{n}" for i, n in shards)
    note = f"A merge of shard{'s' * (len(shards) > 1)} {joined} of suite {suite}"
    missing = [f"{i}/{count}" for i in range(1, count + 1) if (i, count) not in shards]
    if not missing:
        return note + ": the whole suite."
    plural = len(missing) > 1
    return (
        f"{note}; shard{'s' * plural} {', '.join(missing)} {'are' if plural else 'is'} missing, "
        f"so {'their' if plural else 'its'} models are absent."
    )


def _machine_section(tables: RunTables) -> list[Block]:
    blocks: list[Block] = [Heading(2, "Where it was measured")]
    if len(tables.runs) == 1:
        return [*blocks, Bullets(tuple(_machine_items(tables.runs[0])))]
    for run in tables.runs:
        blocks += [Heading(3, f"Run {run['run_id']}"), Bullets(tuple(_machine_items(run)))]
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


_CELL_KEYS = ["model", "variant", "backend", "device", "run_id"]
PARITY_NOTE = (
    "parity: ok when the backend's logits agree with the Keras reference's on the same images "
    "within the tolerance the backend declares (an fp32 runtime's: the same top-1 class on at "
    "least 99.9% of the images and no logit more than 0.001 apart)."
)
PARITY_FAILED_NOTE = (
    "FAILED: this backend computes something other than the reference model; its accuracy "
    "and latency do not describe that model."
)
UNSTABLE_NOTE = (
    "unstable: the latency's coefficient of variation (std / mean) is 10% or more, so the p50 "
    "can move between runs by more than the differences between rows; CV and p99 show the spread."
)


def _parity_table(measured: pd.DataFrame, many_runs: bool) -> tuple[Table, bool]:
    """One row per cell: accuracy, agreement with the Keras reference, the size of the file it
    ran (what int8 buys beside fp32), the memory it held.

    Also returns whether any cell failed parity."""
    headers = ("model", "variant", "backend", "device", "accuracy", "top-1 agreement")
    headers += ("max |diff|", "parity", "file", "worker memory")
    on_gpu = measured["peak_gpu_memory_bytes"].notna().any()
    headers += ("GPU memory",) if on_gpu else ()
    headers += ("run",) if many_runs else ()
    body = []
    any_failed = False
    for key, cell in measured.groupby(_CELL_KEYS, sort=True):
        first = cell.iloc[0]
        failed = not _missing(first.parity_ok) and not bool(first.parity_ok)
        any_failed |= failed
        parity = "-" if _missing(first.parity_ok) else ("FAILED" if failed else "ok")
        values = (*key[:4], fmt_percent(first.test_accuracy))
        values += (fmt_percent(first.parity_top1_agreement), fmt_float(first.parity_max_abs_diff))
        ran = first.onnx_bytes if not _missing(first.onnx_bytes) else first.keras_bytes
        values += (parity, fmt_bytes(ran), fmt_gib(first.peak_rss_bytes))
        values += (fmt_gib(first.peak_gpu_memory_bytes),) if on_gpu else ()
        body.append(values + ((key[4],) if many_runs else ()))
    return Table(headers, tuple(body)), any_failed


def _latency_table(measured: pd.DataFrame, many_runs: bool) -> tuple[Table, bool, str]:
    """One row per cell and batch size: latency, its spread, throughput and efficiency.

    Also returns whether any latency is unstable, and a note when not every batch size fits.
    """
    all_sizes = sorted(int(b) for b in measured["batch_size"].dropna().unique())
    batch_sizes = spread(all_sizes, MAX_BATCH_SIZES_SHOWN)
    headers = ("model", "variant", "backend", "device", "batch", "p50 ms", "p99 ms", "CV")
    headers += ("images/s", "GFLOP/s", "% of peak", "stability")
    headers += ("run",) if many_runs else ()
    rows = measured[measured["batch_size"].isin(batch_sizes)]
    body = []
    any_unstable = False
    for row in rows.sort_values([*_CELL_KEYS, "batch_size"]).itertuples(index=False):
        unstable = not _missing(row.unstable) and bool(row.unstable)
        any_unstable |= unstable
        values = (row.model, row.variant, row.backend, row.device, str(int(row.batch_size)))
        values += (fmt_number(row.p50_ms), fmt_number(row.p99_ms), fmt_percent(row.cv, 1))
        throughput = None if _missing(row.throughput_ips) else round(row.throughput_ips)
        values += (fmt_int(throughput), fmt_number(row.achieved_gflops))
        values += (fmt_share(row.peak_fraction), "unstable" if unstable else "")
        body.append(values + ((row.run_id,) if many_runs else ()))
    note = ""
    if len(batch_sizes) < len(all_sizes):
        note = f"{len(batch_sizes)} of {len(all_sizes)} batch sizes shown; summary.csv has all."
    return Table(headers, tuple(body)), any_unstable, note


def _efficiency_note(measured: pd.DataFrame) -> str:
    peaks = sorted({float(p) for p in measured["peak_gflops"].dropna()})
    if not peaks:
        peak = "not measured in this run, so no % of peak"
    elif len(peaks) == 1:
        peak = f"{peaks[0]:.1f} GFLOP/s"
    else:
        peak = "each run's own: " + ", ".join(f"{p:.1f}" for p in peaks) + " GFLOP/s"
    return (
        "GFLOP/s: 2 x MACs per image x batch size / p50; % of peak: of the fp32 GEMM peak "
        f"measured on the machine ({peak})."
    )


def _backend_blocks(rows: pd.DataFrame, many_runs: bool) -> list[Block]:
    """The accuracy and parity table, then the latency table, each with its flags explained."""
    measured = rows[rows["status"] == "ok"]
    if measured.empty:
        return []
    parity, any_failed = _parity_table(measured, many_runs)
    blocks: list[Block] = [Paragraph("Accuracy and parity with the Keras reference:"), parity]
    blocks.append(Paragraph(PARITY_NOTE + (" " + PARITY_FAILED_NOTE if any_failed else "")))
    latency, any_unstable, note = _latency_table(measured, many_runs)
    blocks += [Paragraph("Latency per call, throughput and efficiency:"), latency]
    notes = [note] if note else []
    notes.append(_efficiency_note(measured))
    if any_unstable:
        notes.append(UNSTABLE_NOTE)
    blocks.append(Paragraph(" ".join(notes)))
    return blocks + _serving_blocks(measured, many_runs)


SERVING_NOTE = (
    "Server: queries of one image arrive as a Poisson process; latency runs from each query's "
    "scheduled arrival, so waiting in the queue counts. max QPS is the highest rate measured "
    "with p99 within the bound (at least serving.min_queries per rate, 662 by default), below "
    "every rate measured beyond it; ≥ marks a search that never reached the bound. sched. "
    "error: the load generator's own lateness (p99) at the highest rate tried. Offline: the "
    "most images per second over the batch sizes and threads tried, with the configuration "
    "that reached it."
)


def _serving_blocks(measured: pd.DataFrame, many_runs: bool) -> list[Block]:
    """One row per cell the suite's [serving] measured: Server at its bound, and Offline."""
    cells = measured.dropna(subset=["serving_p99_bound_ms"]).drop_duplicates(_CELL_KEYS)
    if cells.empty:
        return []
    headers = ("model", "variant", "backend", "device", "p99 bound ms", "in flight")
    headers += ("max QPS at p99 ≤ bound", "p99 ms at it", "sched. error p99 ms")
    headers += ("offline images/s", "offline batch x threads") + (("run",) if many_runs else ())
    body = []
    for row in cells.sort_values(_CELL_KEYS).itertuples(index=False):
        capped = not _missing(row.serving_capped) and bool(row.serving_capped)
        qps = "none" if _missing(row.serving_max_qps) else fmt_number(row.serving_max_qps)
        values = (row.model, row.variant, row.backend, row.device)
        values += (fmt_number(row.serving_p99_bound_ms), fmt_int(row.serving_concurrency))
        values += (("≥ " if capped else "") + qps, fmt_number(row.serving_p99_ms))
        values += (fmt_number(row.serving_schedule_error_p99_ms),)
        values += (fmt_number(row.offline_images_per_s),)
        values += (f"{fmt_int(row.offline_batch_size)} x {fmt_int(row.offline_concurrency)}",)
        body.append(values + ((row.run_id,) if many_runs else ()))
    return [
        Paragraph("Serving (MLPerf LoadGen-style Server and Offline scenarios):"),
        Table(headers, tuple(body)),
        Paragraph(SERVING_NOTE),
    ]


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
    shards = _shards_note(tables.runs)
    if shards:
        blocks.append(Paragraph(shards))
    blocks += _machine_section(tables)
    for dataset in sorted(summary["dataset"].dropna().unique()):
        rows = summary[summary["dataset"] == dataset]
        blocks += [Heading(2, dataset), _models_table(rows, many_runs)]
        ratios = _pool_ratios(rows)
        if ratios:
            blocks.append(Bullets(tuple(ratios)))
        blocks += _backend_blocks(rows, many_runs)
        confusions = _confusions(tables, dataset, many_runs)
        if confusions:
            blocks += [Paragraph("Top confusions (Keras reference):"), Bullets(tuple(confusions))]
    failures = _failures(summary)
    if failures is not None:
        blocks += [Heading(2, "Cells that did not measure"), failures]
    if plots:
        blocks.append(Heading(2, "Plots"))
        blocks += [Figure(plot) for plot in plots]
    return blocks
