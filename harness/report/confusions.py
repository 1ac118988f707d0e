"""The most frequent mistakes in a confusion matrix ("5 predicted as 3: 13")."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Confusion:
    true_class: str
    predicted_class: str
    count: int

    def __str__(self) -> str:
        return f"{self.true_class} predicted as {self.predicted_class}: {self.count}"


def top_confusions(
    matrix: Sequence[Sequence[int]], class_names: Sequence[str], limit: int = 5
) -> list[Confusion]:
    """The ``limit`` largest off-diagonal cells (rows: true class, columns: predicted)."""
    counts = np.asarray(matrix, dtype=np.int64)
    if counts.ndim != 2 or counts.shape[0] != counts.shape[1] or counts.size == 0:
        return []
    names = list(class_names) if len(class_names) == counts.shape[0] else None
    off_diagonal = counts.copy()
    np.fill_diagonal(off_diagonal, 0)
    flat = np.argsort(-off_diagonal, axis=None, kind="stable")[:limit]
    found = []
    for true_index, predicted_index in zip(*np.unravel_index(flat, counts.shape), strict=True):
        count = int(off_diagonal[true_index, predicted_index])
        if count == 0:
            break
        found.append(
            Confusion(
                true_class=names[true_index] if names else str(true_index),
                predicted_class=names[predicted_index] if names else str(predicted_index),
                count=count,
            )
        )
    return found
