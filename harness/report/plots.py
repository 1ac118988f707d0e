"""The report's figures as PNG files: latency, accuracy against size, accuracy against latency,
throughput, the Server scenario's p99 against arrival rate, confusions.

Latency spans three orders of magnitude (a pooled model at batch 1, a model without pooling at a
large batch), so its axes are logarithmic with plain labels; its spread is drawn from the raw
samples (box and whiskers of the per-cell distribution), never from summary columns alone.

Matplotlib is imported here, lazily, with the Agg backend: no display is needed and importing
the harness stays fast.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from harness.report.atomic import atomic_path
from harness.report.frames import RunTables

PLOTS_DIR = "plots"
MAX_BATCH_SIZES_SHOWN = 6
"""Beyond a few batch sizes a figure or a table is unreadable; the data files hold them all."""
PLOT_COLUMNS = [
    *("run_id", "dataset", "model", "variant", "backend", "device", "batch_size", "status"),
    *("p50_ms", "throughput_ips", "params_total", "reference_accuracy", "test_accuracy"),
]
"""The summary columns the plots read: all a background process needs to be sent."""
SPREAD_QUANTILES = {"q01": 0.01, "q25": 0.25, "q50": 0.5, "q75": 0.75, "q99": 0.99}
"""Per cell and batch size, from the raw samples: box p25 to p75, median, whiskers p1 to p99."""
_SPREAD_KEYS = ["run_id", "dataset", "model", "variant", "backend", "device", "batch_size"]


def spread(values: list[int], limit: int) -> list[int]:
    """At most ``limit`` of the sorted ``values``: the first, the last and an even spread."""
    if len(values) <= limit:
        return values
    picks = np.unique(np.linspace(0, len(values) - 1, limit).round().astype(int))
    return [values[i] for i in picks]


@dataclass(frozen=True)
class Plot:
    title: str
    path: Path
    """Relative to the run folder."""


def load_matplotlib() -> None:
    """Import pyplot ahead of the first plot (the import alone takes about half a second)."""
    _pyplot()


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(figure: Any, run_dir: Path, name: str, title: str) -> Plot:
    relative = Path(PLOTS_DIR) / name
    with atomic_path(run_dir / relative) as temporary:
        # Fixed margins rather than bbox_inches="tight", which draws every figure twice.
        figure.savefig(temporary, format="png", dpi=100)
    _pyplot().close(figure)
    return Plot(title=title, path=relative)


def _measured(summary: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """The measured rows, only ``columns``: filtering all of the summary's columns costs more."""
    ok = (summary["status"] == "ok") & summary["p50_ms"].notna()
    return summary.loc[ok.to_numpy(dtype=bool, na_value=False), columns]


def _cell_label(frame: pd.DataFrame) -> pd.Series:
    return frame["dataset"] + "/" + frame["model"] + "/" + frame["variant"]


def latency_spread(samples: pd.DataFrame) -> pd.DataFrame:
    """The :data:`SPREAD_QUANTILES` of every cell and batch size in ms, one row each: what the
    latency figures draw, small enough to send to a background process."""
    columns = [*_SPREAD_KEYS, *SPREAD_QUANTILES]
    if samples.empty:
        return pd.DataFrame(columns=columns)
    grouped = samples.groupby(_SPREAD_KEYS, observed=True, sort=True)["latency_ns"]
    quantiles = grouped.quantile(list(SPREAD_QUANTILES.values())).unstack() / 1e6
    quantiles.columns = list(SPREAD_QUANTILES)
    frame = quantiles.reset_index()
    for name in _SPREAD_KEYS[:-1]:
        frame[name] = frame[name].astype(str)
    return frame[columns]


def machine_label(runs: list[dict[str, Any]]) -> str:
    """Which machine a figure's numbers come from, for its footer."""
    labels = []
    for run in runs:
        env = run.get("environment") or {}
        gpus = [g.get("name") for g in env.get("gpus") or [] if g.get("name")]
        where = f"{env.get('cpu_model') or 'unknown CPU'}, {env.get('physical_cores', '?')} cores"
        labels.append(f"{where}{', ' + ', '.join(gpus) if gpus else ''} (run {run['run_id']})")
    return "measured on " + "; ".join(dict.fromkeys(labels)) if labels else ""


def _footer(figure: Any, label: str) -> None:
    if label:
        figure.text(0.01, 0.01, label, fontsize=7, color="dimgray", ha="left", va="bottom")


def _plain_number(value: float, _position: object = None) -> str:
    """Tick labels without exponents: 0.2, 1, 50, 2k, 3.3M."""
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            return f"{value / scale:.3g}{suffix}"
    return f"{value:.3g}"


def log_axis(axis: Any, low: float, high: float) -> None:
    """A log axis labelled with plain numbers at 1-2-5 steps (every digit within one decade),
    and unlabelled minor ticks, so that labels never overlap."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    span = high / low if low > 0 else 1e9
    subs = (1.0,) if span > 1e4 else (1.0, 2.0, 5.0) if span > 8 else tuple(range(1, 10))
    axis.set_major_locator(LogLocator(base=10, subs=subs, numticks=30))
    axis.set_major_formatter(FuncFormatter(_plain_number))
    axis.set_minor_locator(LogLocator(base=10, subs=tuple(range(1, 10)), numticks=30))
    axis.set_minor_formatter(NullFormatter())


def _no_ticks() -> Any:
    from matplotlib.ticker import NullLocator

    return NullLocator()


def _series_name(backend: str, device: str, run_id: str, many_runs: bool) -> str:
    return f"{backend}/{device}" + (f" ({run_id})" if many_runs else "")


LATENCY_PANELS_PER_ROW = 3
"""Panels wrap into rows so that the figure stays readable when scaled to a page's width."""


def latency_plot(
    summary: pd.DataFrame, spread_ms: pd.DataFrame, run_dir: Path, footer: str = ""
) -> Plot | None:
    """Per batch size, one panel on a log axis: per model variant, one box per backend x device
    (p25 to p75, the median, whiskers p1 to p99 of the raw samples)."""
    ok = _measured(summary, _SPREAD_KEYS)
    rows = spread_ms.merge(ok.astype({k: str for k in _SPREAD_KEYS[:-1]}), on=_SPREAD_KEYS)
    if rows.empty:
        return None
    plt = _pyplot()
    many_runs = rows["run_id"].nunique() > 1
    rows["label"] = _cell_label(rows)
    rows["series"] = [
        _series_name(b, d, r, many_runs)
        for b, d, r in zip(rows["backend"], rows["device"], rows["run_id"], strict=True)
    ]
    all_sizes = sorted(int(b) for b in rows["batch_size"].unique())
    batch_sizes = spread(all_sizes, MAX_BATCH_SIZES_SHOWN)
    labels = sorted(rows["label"].unique())
    series = sorted(rows["series"].unique())
    colors = {name: f"C{k % 10}" for k, name in enumerate(series)}
    width = 0.8 / len(series)
    panel_width = max(3.5, 0.35 * len(labels) * len(series))
    per_row = min(len(batch_sizes), LATENCY_PANELS_PER_ROW)
    panel_rows = -(-len(batch_sizes) // per_row)
    legend_inches = 2.2
    figure_width = 1 + per_row * panel_width + legend_inches
    figure, axes = plt.subplots(
        panel_rows, per_row, figsize=(figure_width, 1.1 + 5 * panel_rows), squeeze=False
    )
    low, high = float(rows["q01"].min()), float(rows["q99"].max())
    for ax, batch_size in zip(axes.flat, batch_sizes, strict=False):
        panel = rows[rows["batch_size"] == batch_size]
        for k, name in enumerate(series):
            part = panel[panel["series"] == name]
            if part.empty:
                continue
            offset = (k - (len(series) - 1) / 2) * width
            positions = [labels.index(label) + offset for label in part["label"]]
            boxes = [
                {"med": r.q50, "q1": r.q25, "q3": r.q75, "whislo": r.q01, "whishi": r.q99}
                for r in part.itertuples(index=False)
            ]
            ax.bxp(
                boxes,
                positions=positions,
                widths=width * 0.85,
                showfliers=False,
                patch_artist=True,
                boxprops={"facecolor": colors[name], "alpha": 0.75},
                medianprops={"color": "black"},
                manage_ticks=False,
            )
        ax.set_yscale("log")
        ax.set_ylim(low / 1.3, high * 1.3)
        log_axis(ax.yaxis, low, high)
        ax.grid(axis="y", which="major", color="#ddd", linewidth=0.6)
        ax.set_xlim(-0.6, len(labels) - 0.4)
        ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right", fontsize=8)
        ax.set_title(f"batch size {batch_size}")
        ax.set_ylabel("ms per call (log scale)")
    for ax in axes.flat[len(batch_sizes) :]:
        ax.set_visible(False)
    handles = [plt.Rectangle((0, 0), 1, 1, color=colors[name], alpha=0.75) for name in series]
    axes[0][-1].legend(handles, series, fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    shown = (
        ""
        if len(batch_sizes) == len(all_sizes)
        else f" ({len(batch_sizes)} of {len(all_sizes)} batch sizes)"
    )
    figure.suptitle(
        "Inference latency per call" + shown + "\n"
        "box: p25 to p75 of the raw samples, line: median, whiskers: p1 to p99",
        fontsize=10,
    )
    _footer(figure, footer)
    height = figure.get_figheight()
    figure.subplots_adjust(
        bottom=1.4 / height,
        top=1 - 0.9 / height,
        hspace=1.6 / 3.5,
        wspace=0.3,
        left=0.8 / figure_width,
        right=1 - legend_inches / figure_width,
    )
    return _save(figure, run_dir, "latency.png", "Latency by backend, device and batch size")


def accuracy_params_plot(summary: pd.DataFrame, run_dir: Path) -> Plot | None:
    """The book's point in one picture: no pooling costs parameters, not accuracy."""
    identity = ["run_id", "dataset", "model", "variant"]
    columns = [*identity, "params_total", "reference_accuracy"]
    models = summary[columns].dropna(subset=columns[-2:]).drop_duplicates(identity)
    if models.empty:
        return None
    plt = _pyplot()
    figure, ax = plt.subplots(figsize=(6.5, 4.5))
    for (dataset, variant), part in models.groupby(["dataset", "variant"]):
        ax.scatter(
            part["params_total"].to_numpy(dtype=float),
            100 * part["reference_accuracy"].to_numpy(dtype=float),
            marker=VARIANT_MARKERS.get(variant, "^"),
            s=60,
            label=f"{dataset} {variant}",
        )
    params = models["params_total"].to_numpy(dtype=float)
    ax.set_xscale("log")
    ax.set_xlim(params.min() / 1.6, params.max() * 1.6)
    log_axis(ax.xaxis, params.min(), params.max())
    ax.set_xlabel("parameters (log scale)")
    ax.set_ylabel("test accuracy, % (Keras reference)")
    ax.legend(fontsize=8)
    ax.set_title("Accuracy against parameter count")
    figure.subplots_adjust(bottom=0.15, left=0.15)
    return _save(figure, run_dir, "accuracy_vs_params.png", "Accuracy against parameter count")


VARIANT_MARKERS = {"pool": "o", "nopool": "s"}


def latency_accuracy_plot(
    summary: pd.DataFrame, spread_ms: pd.DataFrame, dataset: str, run_dir: Path, footer: str = ""
) -> Plot | None:
    """The trade-off a user ships on, for one dataset: each cell's accuracy against its latency
    at the smallest batch size (the median, with a bar from p25 to p75 of the raw samples)."""
    ok = _measured(summary, [*_SPREAD_KEYS, "test_accuracy"])
    ok = ok[(ok["dataset"] == dataset).to_numpy(dtype=bool, na_value=False)]
    keys = {k: str for k in _SPREAD_KEYS[:-1]}
    rows = spread_ms.merge(ok.astype(keys), on=_SPREAD_KEYS).dropna(subset=["test_accuracy"])
    if rows.empty:
        return None
    batch_size = int(rows["batch_size"].min())
    rows = rows[rows["batch_size"] == batch_size]
    plt = _pyplot()
    many_runs = rows["run_id"].nunique() > 1
    series = sorted(
        {
            _series_name(b, d, r, many_runs)
            for b, d, r in zip(rows["backend"], rows["device"], rows["run_id"], strict=True)
        }
    )
    colors = {name: f"C{k % 10}" for k, name in enumerate(series)}
    figure, ax = plt.subplots(figsize=(7.5, 4.8))
    for row in rows.sort_values(["model", "variant", "backend", "device"]).itertuples(index=False):
        name = _series_name(row.backend, row.device, row.run_id, many_runs)
        accuracy = 100 * float(row.test_accuracy)
        ax.errorbar(
            row.q50,
            accuracy,
            xerr=[[row.q50 - row.q25], [row.q75 - row.q50]],
            fmt=VARIANT_MARKERS.get(row.variant, "^"),
            color=colors[name],
            markersize=8,
            capsize=3,
            label=f"{row.model} {row.variant}, {name}",
        )
    low, high = float(rows["q25"].min()), float(rows["q75"].max())
    ax.set_xscale("log")
    ax.set_xlim(low / 1.5, high * 1.5)
    log_axis(ax.xaxis, low, high)
    ax.grid(which="major", color="#ddd", linewidth=0.6)
    ax.set_xlabel(f"p50 ms per call at batch size {batch_size} (log scale; bar: p25 to p75)")
    ax.set_ylabel("test accuracy, % (this backend)")
    ax.set_title(f"{dataset}: accuracy against latency")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    _footer(figure, footer)
    figure.subplots_adjust(left=0.1, right=0.62, bottom=0.17)
    name = "latency_vs_accuracy_" + _file_part(dataset) + ".png"
    return _save(figure, run_dir, name, f"Accuracy against latency, {dataset}")


def _file_part(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text)


def throughput_plot(summary: pd.DataFrame, run_dir: Path, footer: str = "") -> Plot | None:
    """Images per second against batch size (both on log axes), one line per cell, one panel per
    dataset."""
    keys = ["model", "variant", "backend", "device", "run_id"]
    rows = _measured(summary, ["dataset", *keys, "batch_size", "throughput_ips"])
    rows = rows.dropna(subset=["throughput_ips"])
    if rows.empty:
        return None
    plt = _pyplot()
    datasets = sorted(rows["dataset"].unique())
    figure, axes = plt.subplots(1, len(datasets), figsize=(5.5 * len(datasets), 4), squeeze=False)
    for ax, dataset in zip(axes[0], datasets, strict=True):
        panel = rows[rows["dataset"] == dataset]
        for key, line in panel.groupby(keys):
            line = line.sort_values("batch_size")
            ax.plot(
                line["batch_size"].to_numpy(dtype=float),
                line["throughput_ips"].to_numpy(dtype=float),
                marker="o",
                label="/".join(key[:4]),
            )
        sizes = sorted(int(b) for b in panel["batch_size"].unique())
        ax.set_xscale("log", base=2)
        ax.set_xticks(sizes, [str(b) for b in sizes])
        ax.xaxis.set_minor_locator(_no_ticks())
        images = panel["throughput_ips"].to_numpy(dtype=float)
        ax.set_yscale("log")
        ax.set_ylim(images.min() / 1.5, images.max() * 1.5)
        log_axis(ax.yaxis, images.min(), images.max())
        ax.grid(axis="y", which="major", color="#ddd", linewidth=0.6)
        ax.set_xlabel("batch size")
        ax.set_ylabel("images per second (log scale)")
        ax.set_title(dataset)
        ax.legend(fontsize=7)
    _footer(figure, footer)
    figure.subplots_adjust(bottom=0.18, wspace=0.3)
    return _save(figure, run_dir, "throughput.png", "Throughput against batch size")


def confusion_plot(model: dict[str, Any], run_dir: Path, run_count: int) -> Plot | None:
    """A heatmap of the Keras reference's confusion matrix (rows: true, columns: predicted)."""
    matrix = np.asarray(model.get("confusion") or [], dtype=np.int64)
    if matrix.ndim != 2 or matrix.size == 0:
        return None
    plt = _pyplot()
    names = list(model.get("class_names") or range(matrix.shape[0]))
    figure, ax = plt.subplots(figsize=(6, 5.5))
    image = ax.imshow(matrix, cmap="Blues")
    figure.colorbar(image, ax=ax)
    ticks = range(matrix.shape[0])
    ax.set_xticks(ticks, [str(n) for n in names], rotation=45, ha="right", fontsize=8)
    ax.set_yticks(ticks, [str(n) for n in names], fontsize=8)
    threshold = matrix.max() / 2
    for (i, j), count in np.ndenumerate(matrix):
        color = "white" if count > threshold else "black"
        ax.text(j, i, str(count), ha="center", va="center", fontsize=7, color=color)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    identity = f"{model['dataset']} {model['model']} {model['variant']}"
    ax.set_title(f"Confusion matrix: {identity}")
    figure.subplots_adjust(bottom=0.2, left=0.2)
    parts = [model["dataset"], model["model"], model["variant"]]
    if run_count > 1:
        parts.append(model["run_id"])
    name = "confusion_" + _file_part("_".join(parts)) + ".png"
    return _save(figure, run_dir, name, f"Confusion matrix, {identity}")


def serving_plot(curve: pd.DataFrame, run_dir: Path, footer: str = "") -> Plot | None:
    """The Server scenario's search: p99 latency against the arrival rate (both on log axes),
    one line per cell, one panel per dataset, each cell's p99 bound dashed in its colour."""
    if curve.empty:
        return None
    plt = _pyplot()
    keys = ["model", "variant", "backend", "device", "run_id"]
    many_runs = curve["run_id"].nunique() > 1
    datasets = sorted(curve["dataset"].unique())
    figure, axes = plt.subplots(1, len(datasets), figsize=(6 * len(datasets), 4.5), squeeze=False)
    for ax, dataset in zip(axes[0], datasets, strict=True):
        panel = curve[curve["dataset"] == dataset]
        for k, (key, line) in enumerate(panel.groupby(keys, sort=True)):
            line = line.sort_values("rate_qps")
            color = f"C{k % 10}"
            label = "/".join(key[:4]) + (f" ({key[4]})" if many_runs else "")
            ax.plot(line["rate_qps"], line["p99_ms"], marker="o", color=color, label=label)
            ax.axhline(line["bound_ms"].iloc[0], color=color, linestyle="--", linewidth=0.8)
        rates = panel["rate_qps"].to_numpy(dtype=float)
        p99 = np.concatenate([panel["p99_ms"], panel["bound_ms"]]).astype(float)
        ax.set_xscale("log")
        ax.set_yscale("log")
        x_range = (rates.min() / 1.3, rates.max() * 1.3)
        y_range = (p99.min() / 1.5, p99.max() * 1.5)
        ax.set_xlim(*x_range)
        ax.set_ylim(*y_range)
        log_axis(ax.xaxis, *x_range)
        log_axis(ax.yaxis, *y_range)
        ax.grid(which="major", color="#ddd", linewidth=0.6)
        ax.set_xlabel("arrival rate, queries of one image per second (log scale)")
        ax.set_ylabel("p99 ms from scheduled arrival (log scale)")
        ax.set_title(f"{dataset}: Server scenario, dashed: p99 bound")
        ax.legend(fontsize=7)
    _footer(figure, footer)
    figure.subplots_adjust(bottom=0.18, wspace=0.3)
    return _save(figure, run_dir, "serving.png", "Server scenario: p99 against arrival rate")


PlotTask = tuple[Callable[..., Plot | None], tuple[Any, ...]]


def plot_tasks(tables: RunTables, run_dir: Path) -> list[PlotTask]:
    """Every figure of the report as ``(function, arguments)``, in report order, so that two
    processes can share them; the arguments hold only what the figures read (the
    :data:`PLOT_COLUMNS` and the samples' quantiles), to be cheap to send."""
    summary = tables.summary[PLOT_COLUMNS]
    spread_ms = latency_spread(tables.samples)
    footer = machine_label(tables.runs)
    run_count = len({model["run_id"] for model in tables.models})
    datasets = sorted(summary["dataset"].dropna().unique())
    return [
        (latency_plot, (summary, spread_ms, run_dir, footer)),
        (accuracy_params_plot, (summary, run_dir)),
        *((latency_accuracy_plot, (summary, spread_ms, d, run_dir, footer)) for d in datasets),
        (throughput_plot, (summary, run_dir, footer)),
        (serving_plot, (tables.serving_curve, run_dir, footer)),
        *((confusion_plot, (model, run_dir, run_count)) for model in tables.models),
    ]
