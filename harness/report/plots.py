"""The report's figures as PNG files: latency, accuracy against size, throughput, confusions.

Matplotlib is imported here, lazily, with the Agg backend: no display is needed and importing
the harness stays fast.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from harness.report.atomic import atomic_path

PLOTS_DIR = "plots"
MAX_BATCH_SIZES_SHOWN = 6
"""Beyond a few batch sizes a figure or a table is unreadable; the data files hold them all."""


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


def _measured(summary: pd.DataFrame) -> pd.DataFrame:
    return summary[(summary["status"] == "ok") & summary["p50_ms"].notna()]


def _cell_label(frame: pd.DataFrame) -> pd.Series:
    return frame["dataset"] + "/" + frame["model"] + "/" + frame["variant"]


def latency_plot(summary: pd.DataFrame, run_dir: Path) -> Plot | None:
    """p50 bars per backend x device, one panel per batch size; whiskers span p90 to p99."""
    rows = _measured(summary)
    if rows.empty:
        return None
    plt = _pyplot()
    all_sizes = sorted(int(b) for b in rows["batch_size"].unique())
    batch_sizes = spread(all_sizes, MAX_BATCH_SIZES_SHOWN)
    labels = sorted(_cell_label(rows).unique())
    series = sorted(set(zip(rows["backend"], rows["device"], strict=True)))
    width = 0.8 / len(series)
    figure, axes = plt.subplots(
        1,
        len(batch_sizes),
        figsize=(2 + len(batch_sizes) * max(3.5, 0.35 * len(labels) * len(series)), 4.5),
        squeeze=False,
    )
    for ax, batch_size in zip(axes[0], batch_sizes, strict=True):
        panel = rows[rows["batch_size"] == batch_size]
        positions = {label: i for i, label in enumerate(labels)}
        for k, (backend, device) in enumerate(series):
            part = panel[(panel["backend"] == backend) & (panel["device"] == device)]
            x = (
                _cell_label(part).map(positions).to_numpy(dtype=float)
                + (k - (len(series) - 1) / 2) * width
            )
            ax.bar(x, part["p50_ms"].to_numpy(dtype=float), width, label=f"{backend}/{device}")
            ax.vlines(
                x,
                part["p90_ms"].to_numpy(dtype=float, na_value=np.nan),
                part["p99_ms"].to_numpy(dtype=float, na_value=np.nan),
                color="black",
                linewidth=1,
            )
        ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right", fontsize=8)
        ax.set_title(f"batch size {batch_size}")
        ax.set_ylabel("ms per call")
    axes[0][-1].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    shown = (
        ""
        if len(batch_sizes) == len(all_sizes)
        else f" ({len(batch_sizes)} of {len(all_sizes)} batch sizes)"
    )
    figure.suptitle("Inference latency per call: bars p50, whiskers p90 to p99" + shown)
    figure.subplots_adjust(bottom=0.3, wspace=0.3, right=0.8)
    return _save(figure, run_dir, "latency.png", "Latency by backend, device and batch size")


def accuracy_params_plot(summary: pd.DataFrame, run_dir: Path) -> Plot | None:
    """The book's point in one picture: no pooling costs parameters, not accuracy."""
    models = summary.dropna(subset=["params_total", "reference_accuracy"]).drop_duplicates(
        ["run_id", "dataset", "model", "variant"]
    )
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
    rows = _measured(summary).dropna(subset=["throughput_ips"])
    if rows.empty:
        return None
    plt = _pyplot()
    datasets = sorted(rows["dataset"].unique())
    figure, axes = plt.subplots(1, len(datasets), figsize=(5.5 * len(datasets), 4), squeeze=False)
    for ax, dataset in zip(axes[0], datasets, strict=True):
        panel = rows[rows["dataset"] == dataset]
        for keys, line in panel.groupby(["model", "variant", "backend", "device", "run_id"]):
            line = line.sort_values("batch_size")
            ax.plot(
                line["batch_size"].to_numpy(dtype=float),
                line["throughput_ips"].to_numpy(dtype=float),
                marker="o",
                label="/".join(keys[:4]),
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


def write_plots(summary: pd.DataFrame, models: list[dict[str, Any]], run_dir: Path) -> list[Plot]:
    plots = [
        latency_plot(summary, run_dir),
        accuracy_params_plot(summary, run_dir),
        throughput_plot(summary, run_dir),
    ]
    run_count = len({model["run_id"] for model in models})
    plots.extend(confusion_plot(model, run_dir, run_count) for model in models)
    return [plot for plot in plots if plot is not None]
