"""The same seed trains the same weights in another process, with the machine's cores kept busy
by other processes while it trains (issue 15, item 12: what training.set_seeds promises)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow

TRAIN = """
import hashlib

import numpy as np

from harness.api import LabelledImages
from harness.suite import TrainingRecipe
from harness.training import set_seeds, train
from harness_book_cnn import BookCnn

rng = np.random.default_rng(0)
data = LabelledImages(
    rng.integers(0, 256, (512, 28, 28, 1), dtype=np.uint8), rng.integers(0, 10, 512)
)
set_seeds(3)
model = BookCnn().build("pool", (28, 28, 1), 10)
train(model, data, TrainingRecipe(batch_size=32), 24, 3, progress=False)
weights = b"".join(np.ascontiguousarray(w).tobytes() for w in model.get_weights())
print(hashlib.sha256(weights).hexdigest())
"""

BUSY = "while True:\n    pass\n"


def trained_weights_digest() -> str:
    done = subprocess.run(
        [sys.executable, "-c", TRAIN], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.split()[-1]


def test_the_same_seed_trains_the_same_weights_in_a_process_beside_busy_cores():
    first = trained_weights_digest()
    busy = [subprocess.Popen([sys.executable, "-c", BUSY]) for _ in range(os.cpu_count() or 1)]
    try:
        loaded = trained_weights_digest()
    finally:
        for process in busy:
            process.kill()
            process.wait()
    assert loaded == first
