"""Benchmarks measure the harness's own speed and overhead; run them with ``tox -e perf``."""
