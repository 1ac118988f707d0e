"""The planner: cells are the cross product, with each backend only on the devices it knows."""

from __future__ import annotations

import pytest

from harness import hookimpl
from harness.api import ModelSpec
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
    with pytest.raises(SuiteError, match="no model has variant 'avgpool'; variants: book_cnn: po"):
        plan_cells(suite, get_registry())


def test_unknown_backend_is_an_error_listing_the_known_ones():
    suite = override(load_suite("quick"), backends=("tensorrt",))
    with pytest.raises(RegistryError, match="unknown backend 'tensorrt'; known: keras, onnx"):
        plan_cells(suite, get_registry())


class DenseOnly(ModelSpec):
    name = "dense_only"
    variants = ("dense",)

    def build(self, variant, input_shape, num_classes):
        raise NotImplementedError


class DenseOnlyPlugin:
    @hookimpl
    def register_models(self, register):
        register(DenseOnly())


def test_each_model_gets_only_the_suite_variants_it_has(register_plugin):
    register_plugin(DenseOnlyPlugin(), "dense_only")
    suite = override(
        load_suite("quick"),
        datasets=("mnist",),
        models=("book_cnn", "dense_only"),
        variants=("pool", "dense"),
    )
    plans = plan_cells(suite, get_registry())
    assert [p.key.slug() for p in plans] == ["mnist-book_cnn-pool", "mnist-dense_only-dense"]
