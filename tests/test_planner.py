"""The planner: cells are the cross product, with each backend only on the devices it knows."""

from __future__ import annotations

import pytest

from harness.errors import RegistryError, SuiteError
from harness.planner import plan_cells
from harness.plugins import get_registry
from harness.suite import load_suite, override


def test_quick_suite_plans_four_models_each_on_both_cpu_backends():
    plans = plan_cells(load_suite("quick"), get_registry())
    assert [p.key.slug() for p in plans] == [
        "mnist-book_cnn-pool",
        "mnist-book_cnn-nopool",
        "cifar10-book_cnn-pool",
        "cifar10-book_cnn-nopool",
    ]
    for plan in plans:
        assert [(c.backend, c.device) for c in plan.cells] == [
            ("keras", "cpu"),
            ("onnxruntime", "cpu"),
        ]


def test_gpu_spellings_pair_each_backend_with_its_own_device_name():
    suite = override(load_suite("quick"), devices=("gpu", "cuda"))
    plans = plan_cells(suite, get_registry())
    assert [(c.backend, c.device) for c in plans[0].cells] == [
        ("keras", "gpu"),
        ("onnxruntime", "cuda"),
    ]


def test_unknown_device_is_an_error_naming_the_known_ones():
    suite = override(load_suite("quick"), devices=("tpu",))
    with pytest.raises(SuiteError, match=r"tpu are not known.*known: cpu, cuda, gpu"):
        plan_cells(suite, get_registry())


def test_unknown_variant_is_an_error_naming_the_models_variants():
    suite = override(load_suite("quick"), variants=("avgpool",))
    with pytest.raises(SuiteError, match="no variant 'avgpool'; it has: pool, nopool"):
        plan_cells(suite, get_registry())


def test_unknown_backend_is_an_error_listing_the_known_ones():
    suite = override(load_suite("quick"), backends=("tensorrt",))
    with pytest.raises(RegistryError, match="unknown backend 'tensorrt'; known: keras, onnx"):
        plan_cells(suite, get_registry())
