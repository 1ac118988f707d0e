"""The report's figures as PNG files: latency, accuracy against size, throughput, confusions.

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

PLOTS_DIR = "plots"
MAX_BATCH_SIZES_SHOWN = 6
"""Beyond a few batch sizes a figure or a table is unreadable; the data files hold them all."""
PLOT_COLUMNS = [
    *("run_id", "dataset", "model", "variant", "backend", "device", "batch_size", "status"),
    *("p50_ms", "p90_ms", "p99_ms", "throughput_ips", "params_total", "reference_accuracy"),
]
"""The summary columns the plots read: all a background process needs to be sent."""


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


def _floats(series: pd.Series) -> np.ndarray:
    return series.to_numpy(dtype=float, na_value=np.nan)


LATENCY_PANELS_PER_ROW = 3
"""Panels wrap into rows so that the figure stays readable when scaled to a page's width."""


def latency_plot(summary: pd.DataFrame, run_dir: Path) -> Plot | None:
    """p50 bars per backend x device, one panel per batch size; whiskers span p90 to p99."""
    columns = ["dataset", "model", "variant", "backend", "device", "batch_size"]
    rows = _measured(summary, [*columns, "p50_ms", "p90_ms", "p99_ms"])
    if rows.empty:
        return None
    plt = _pyplot()
    # Plain arrays once: per-panel pandas filtering dominated the plot's time.
    batch = rows["batch_size"].to_numpy(dtype=np.int64)
    label_of_row = _cell_label(rows).to_numpy(dtype=object)
    series_of_row = (rows["backend"] + "/" + rows["device"]).to_numpy(dtype=object)
    p50, p90, p99 = (_floats(rows[name]) for name in ("p50_ms", "p90_ms", "p99_ms"))
    all_sizes = sorted(int(b) for b in np.unique(batch))
    batch_sizes = spread(all_sizes, MAX_BATCH_SIZES_SHOWN)
    labels = sorted(set(label_of_row))
    position_of_row = pd.Series(range(len(labels)), index=labels)[label_of_row].to_numpy(float)
    series = sorted(set(zip(rows["backend"], rows["device"], strict=True)))
    width = 0.8 / len(series)
    panel_width = max(3.5, 0.35 * len(labels) * len(series))
    per_row = min(len(batch_sizes), LATENCY_PANELS_PER_ROW)
    panel_rows = -(-len(batch_sizes) // per_row)
    legend_inches = 1.8
    figure_width = 1 + per_row * panel_width + legend_inches
    figure, axes = plt.subplots(
        panel_rows, per_row, figsize=(figure_width, 1 + 3.5 * panel_rows), squeeze=False
    )
    for ax, batch_size in zip(axes.flat, batch_sizes, strict=False):
        in_panel = batch == batch_size
        for k, (backend, device) in enumerate(series):
            name = f"{backend}/{device}"
            part = in_panel & (series_of_row == name)
            x = position_of_row[part] + (k - (len(series) - 1) / 2) * width
            ax.bar(x, p50[part], width, label=name)
            ax.vlines(x, p90[part], p99[part], color="black", linewidth=1)
        ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right", fontsize=8)
        ax.set_title(f"batch size {batch_size}")
        ax.set_ylabel("ms per call")
    for ax in axes.flat[len(batch_sizes) :]:
        ax.set_visible(False)
    axes[0][-1].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    shown = (
        ""
        if len(batch_sizes) == len(all_sizes)
        else f" ({len(batch_sizes)} of {len(all_sizes)} batch sizes)"
    )
    figure.suptitle("Inference latency per call: bars p50, whiskers p90 to p99" + shown)
    figure.subplots_adjust(
        bottom=0.3 / panel_rows,
        top=1 - 0.8 / figure.get_figheight(),
        hspace=0.8,
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
    markers = {"pool": "o", "nopool": "s"}
    for (dataset, variant), part in models.groupby(["dataset", "variant"]):
        ax.scatter(
            part["params_total"].to_numpy(dtype=float),
            100 * part["reference_accuracy"].to_numpy(dtype=float),
            marker=markers.get(variant, "^"),
            s=60,
            label=f"{dataset} {variant}",
        )
    ax.set_xscale("log")
    ax.set_xlabel("parameters (log scale)")
    ax.set_ylabel("test accuracy, % (Keras reference)")
    ax.legend(fontsize=8)
    ax.set_title("Accuracy against parameter count")
    figure.subplots_adjust(bottom=0.15, left=0.15)
    return _save(figure, run_dir, "accuracy_vs_params.png", "Accuracy against parameter count")


def throughput_plot(summary: pd.DataFrame, run_dir: Path) -> Plot | None:
    """Images per second against batch size, one line per cell, one panel per dataset."""
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
        ax.set_xscale("log", base=2)
        ax.set_xlabel("batch size")
        ax.set_ylabel("images per second")
        ax.set_title(dataset)
        ax.legend(fontsize=7)
    figure.subplots_adjust(bottom=0.15, wspace=0.3)
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
    name = "confusion_" + re.sub(r"[^A-Za-z0-9._-]+", "_", "_".join(parts)) + ".png"
    return _save(figure, run_dir, name, f"Confusion matrix, {identity}")


PlotTask = tuple[Callable[..., Plot | None], tuple[Any, ...]]


def plot_tasks(
    summary: pd.DataFrame, models: list[dict[str, Any]], run_dir: Path
) -> list[PlotTask]:
    """Every figure of the report as ``(function, arguments)``, in report order, so that two
    processes can share them; ``summary`` needs only the :data:`PLOT_COLUMNS`."""
    run_count = len({model["run_id"] for model in models})
    return [
        (latency_plot, (summary, run_dir)),
        (accuracy_params_plot, (summary, run_dir)),
        (throughput_plot, (summary, run_dir)),
        *((confusion_plot, (model, run_dir, run_count)) for model in models),
    ]
