"""Peak memory of loading all of CIFAR-10: at most 2.5x the size of its uint8 images.

Measured in a fresh subprocess on generated full-size files (50,000 + 10,000 images), so the
numbers are the loader's alone: resident memory after imports, then the peak resident memory
of the process (``VmHWM``; not ``ru_maxrss``, which Linux carries over from the parent across
fork and exec) after loading and holding both splits.
Run: ``pytest benchmarks/test_dataset_memory.py``.
"""

import json
import subprocess
import sys

import pytest

from harness.synthetic import write_cifar10

MAX_PEAK_OVER_DATA = 2.5
FULL_SIZE = {"train": 50000, "test": 10000}

MEASURE = """
import json, sys
from pathlib import Path
import psutil
from harness_cifar10.dataset import Cifar10Dataset

def peak_rss():
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024

dataset = Cifar10Dataset()
before = psutil.Process().memory_info().rss
assert peak_rss() < before * 1.5, "imports should not leave a high-water mark far above RSS"
splits = [dataset.load(Path(sys.argv[1]), split) for split in ("train", "test")]
peak = peak_rss()
print(json.dumps({
    "rss_before": before,
    "peak_rss": peak,
    "image_bytes": sum(s.images.nbytes for s in splits),
    "images": sum(len(s) for s in splits),
}))
"""


@pytest.fixture(scope="module", params=["archive", "extracted"])
def full_size_cifar10(request, tmp_path_factory):
    folder = tmp_path_factory.mktemp(f"cifar10-{request.param}")
    write_cifar10(folder, **FULL_SIZE, extracted=request.param == "extracted")
    return folder


def _measure(data_dir):
    result = subprocess.run(
        [sys.executable, "-c", MEASURE, str(data_dir)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(result.stdout)


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc/self/status")
def test_loading_all_of_cifar10_peaks_below_2_5x_its_uint8_size(benchmark, full_size_cifar10):
    measured = benchmark.pedantic(_measure, args=(full_size_cifar10,), rounds=1, iterations=1)

    ratio = (measured["peak_rss"] - measured["rss_before"]) / measured["image_bytes"]
    benchmark.extra_info.update(measured, peak_over_data=round(ratio, 3))
    assert measured["images"] == sum(FULL_SIZE.values())
    assert ratio <= MAX_PEAK_OVER_DATA, measured
