"""The GEMM peak: the best of several sizes, through ONNX Runtime's MatMul."""

import pytest

from harness.peak import measure_gemm_peak


def test_peak_is_the_best_size_through_onnxruntime_on_the_given_threads():
    peak = measure_gemm_peak(sizes=(32, 64), min_seconds=0.01, threads=1)
    assert peak.gflops > 0
    assert peak.size in (32, 64)
    assert (peak.engine, peak.threads) == ("onnxruntime MatMul", 1)


def test_no_sizes_is_an_error():
    with pytest.raises(ValueError, match="at least one matrix size"):
        measure_gemm_peak(sizes=())
