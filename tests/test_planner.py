"""The planner: cells are the cross product, with each backend only on the devices it knows."""

from __future__ import annotations

from dataclasses import replace

import pytest

from harness import hookimpl
from harness.api import Backend, Dataset, ModelSpec, Option
from harness.cli import main
from harness.errors import RegistryError, SuiteError
from harness.planner import plan_cells
from harness.plugins import get_registry
from harness.suite import load_suite, override


def test_quick_suite_plans_four_models_each_on_the_three_cpu_backends():
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
            ("onnxruntime_int8", "cpu"),
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


def test_a_misspelt_training_steps_key_is_an_error_before_anything_trains(tmp_path):
    path = tmp_path / "steps.toml"
    path.write_text('name = "steps"\n[training.steps]\n"book_cnn.nopol" = 5\n')
    with pytest.raises(SuiteError, match=r"steps.toml: training.steps key 'book_cnn.nopol'"):
        plan_cells(load_suite(str(path)), get_registry())


def test_a_training_steps_key_per_model_and_variant_is_planned(tmp_path):
    path = tmp_path / "steps.toml"
    path.write_text('name = "steps"\n[training.steps]\n"book_cnn.nopool" = 5\n')
    suite = load_suite(str(path))
    assert plan_cells(suite, get_registry())
    assert suite.training.steps_for("mnist", "nopool", model="book_cnn") == 5


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


def test_backend_options_for_an_unknown_backend_are_an_error_listing_the_known_ones(tmp_path):
    path = tmp_path / "typo.toml"
    path.write_text('name = "typo"\n[backend_options.onnxrutime]\nintra_op_threads = 1\n')
    with pytest.raises(
        SuiteError,
        match=r"typo.toml: backend_options for unknown backend\(s\) onnxrutime; backends: keras",
    ):
        plan_cells(load_suite(str(path)), get_registry())


class DatasetWithoutGenerator(Dataset):
    name = "files_only"
    input_shape = (8, 8, 1)
    class_names = ("a", "b")

    def load(self, data_dir, split):
        raise NotImplementedError


class FilesOnlyPlugin:
    @hookimpl
    def register_datasets(self, register):
        register(DatasetWithoutGenerator())


def test_a_synthetic_suite_naming_a_dataset_without_a_generator_is_an_error(register_plugin):
    register_plugin(FilesOnlyPlugin(), "files_only")
    suite = override(load_suite("smoke"), datasets=("mnist", "files_only"))
    with pytest.raises(SuiteError, match="dataset\\(s\\) files_only cannot generate data"):
        plan_cells(suite, get_registry())
    plan_cells(replace(suite, synthetic_data=False), get_registry())  # real files: fine


def suite_with(tmp_path, table: str):
    path = tmp_path / "typo.toml"
    path.write_text(f'name = "typo"\n{table}\n')
    return load_suite(str(path))


def test_a_misspelt_backend_option_is_an_error_naming_the_key_and_the_allowed_ones(tmp_path):
    suite = suite_with(tmp_path, "[backend_options.keras]\njit = true")
    with pytest.raises(
        SuiteError,
        match=r"typo.toml: backend_options.keras: unknown key 'jit'; allowed: jit_compile, intra_",
    ):
        plan_cells(suite, get_registry())


def test_a_backend_option_of_the_wrong_type_is_an_error_naming_what_it_takes(tmp_path):
    suite = suite_with(tmp_path, '[backend_options.onnxruntime]\nexecution_mode = "fast"')
    with pytest.raises(
        SuiteError,
        match=r"onnxruntime.execution_mode must be one of sequential, parallel, got 'fast'",
    ):
        plan_cells(suite, get_registry())


class Declared(Backend):
    name = "declared"
    options = {
        "threads": Option(0),
        "fast": Option(True),
        "mode": Option("a", choices=("a", "b")),
        "scale": Option(1.0),
        "label": Option("x"),
    }

    def prepare(self, model, device, options):
        raise NotImplementedError


class Undeclared(Declared):
    name = "undeclared"
    options = None


def test_declared_options_get_their_defaults_and_keep_what_the_suite_sets():
    assert Declared().check_options({"threads": 2, "scale": 3}) == {
        "threads": 2,
        "fast": True,
        "mode": "a",
        "scale": 3,
        "label": "x",
    }


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"thread": 1}, "backend_options.declared: unknown key 'thread'; allowed: threads, fast"),
        ({"threads": -1}, "backend_options.declared.threads must be a non-negative int, got -1"),
        ({"threads": True}, "threads must be a non-negative int, got True"),
        ({"threads": 1.5}, "threads must be a non-negative int, got 1.5"),
        ({"fast": 1}, "backend_options.declared.fast must be true or false, got 1"),
        ({"mode": "c"}, "backend_options.declared.mode must be one of a, b, got 'c'"),
        ({"scale": "big"}, "scale must be a non-negative number, got 'big'"),
        ({"label": 3}, "backend_options.declared.label must be a string, got 3"),
    ],
)
def test_a_declared_option_refuses_what_it_does_not_take(options, message):
    with pytest.raises(SuiteError) as error:
        Declared().check_options(options)
    assert message in str(error.value)


def test_a_backend_that_declares_no_options_gets_its_table_unchecked():
    assert Undeclared().check_options({"anything": [1, 2]}) == {"anything": [1, 2]}


def test_harness_run_with_a_misspelt_option_stops_before_any_training(
    tmp_path, monkeypatch, capsys
):
    trained: list[object] = []
    monkeypatch.setattr("harness.model_cache.train_model", lambda *args, **kw: trained.append(args))
    path = tmp_path / "typo.toml"
    path.write_text('name = "typo"\n[backend_options.onnxruntime]\nthreads = 2\n')
    out = tmp_path / "runs"
    assert main(["run", "--suite", str(path), "--out", str(out), "--no-progress"]) == 2
    error = capsys.readouterr().err
    assert "backend_options.onnxruntime: unknown key 'threads'; allowed: intra_op_threads" in error
    assert trained == []
    assert not out.exists()


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            {"batch_sizes": (1, 100_000_000_000)},
            "batch_sizes holds 100,000,000,000, above the largest batch size the harness runs, "
            "65,536",
        ),
        (
            {"training": {"batch_size": 70_000}},
            "training.batch_size holds 70,000, above the largest batch size",
        ),
        (
            {"worker_memory_limit_mb": 10, "batch_sizes": (8_192,)},
            "batch_sizes holds 8,192: a batch of 8,192 mnist images (28x28x1) needs 24 MiB as "
            "float32 for its input alone, above the worker memory limit of 10 MiB; use a smaller "
            "batch size or raise worker_memory_limit_mb (--memory-limit)",
        ),
    ],
    ids=["above-the-maximum", "training-above-the-maximum", "input-above-the-memory-limit"],
)
def test_a_batch_size_that_cannot_fit_is_refused_naming_it(tmp_path, changes, message):
    from harness.suite import TrainingRecipe

    if "training" in changes:
        changes = {"training": TrainingRecipe(**changes["training"])}
    suite = replace(load_suite("quick"), datasets=("mnist",), **changes)
    with pytest.raises(SuiteError) as error:
        plan_cells(suite, get_registry())
    assert str(error.value).startswith("built-in suite 'quick': ")
    assert message in str(error.value)


def test_the_default_memory_limit_is_half_the_machines_memory(monkeypatch):
    from harness import memory

    monkeypatch.setattr(memory, "machine_memory_bytes", lambda: 8 * 2**30)
    assert memory.worker_memory_limit_bytes(0) == 4 * 2**30
    assert memory.worker_memory_limit_bytes(300) == 300 * 2**20
