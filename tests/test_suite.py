"""Suites: built-ins load, user files validate, CLI overrides change single fields."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from harness.errors import SuiteError
from harness.suite import BUILTIN_SUITES, load_suite, override


@pytest.mark.parametrize("name", BUILTIN_SUITES)
def test_builtin_suites_load(name):
    suite = load_suite(name)
    assert suite.name == name
    assert set(suite.variants) == {"pool", "nopool"}
    assert suite.training.steps_for("mnist", "pool") > 0


def test_quick_suite_measures_batch_1_and_32_for_at_least_100_iterations_and_2_seconds():
    suite = load_suite("quick")
    assert suite.batch_sizes == (1, 32)
    assert suite.latency.min_iterations >= 100 and suite.latency.min_seconds >= 2.0


def test_book_suite_trains_mnist_for_the_books_5000_steps_and_times_662_iterations():
    suite = load_suite("book")
    assert suite.training.steps_for("mnist", "pool") == 5000
    assert suite.training.steps_for("mnist", "nopool") == 5000
    assert suite.latency.min_iterations >= 662 and suite.latency.min_seconds >= 10


def test_step_lookup_prefers_dataset_variant_then_variant_then_dataset_then_default(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text(
        'name = "s"\n[training.steps]\n"mnist.pool" = 1\npool = 2\ncifar10 = 3\ndefault = 4\n'
    )
    recipe = load_suite(str(path)).training
    assert recipe.steps_for("mnist", "pool") == 1
    assert recipe.steps_for("cifar10", "pool") == 2
    assert recipe.steps_for("cifar10", "nopool") == 3
    assert recipe.steps_for("other", "nopool") == 4


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "suite.toml"
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('name = "x"\nbatch_size = [1]\n', "unknown key 'batch_size'; allowed: backend_options"),
        ('name = "x"\nbatch_sizes = [0]\n', "batch_sizes must be positive integers"),
        ('name = "x"\nseed = "zero"\n', "key 'seed' must be int"),
        ('name = "x"\nseed = true\n', "key 'seed' must be int"),
        ('name = "x"\n[latency]\nmin_iters = 3\n', "unknown key latency.'min_iters'"),
        ('name = "x"\n[latency]\nmin_seconds = -1\n', "latency.min_seconds must not be negative"),
        ('name = "x"\ndatasets = []\n', "datasets must be a non-empty list of names"),
        ('name = "x"\nseed = -1\n', "seed must be between 0 and 4294967295, got -1"),
        ('name = "x"\nseed = 4294967296\n', "seed must be between 0 and 4294967295"),
        ('name = "x"\ntest_subset = -5\n', "test_subset must be 0 (all) or a number of images"),
        ('name = "x"\nworker_timeout_s = 0\n', "worker_timeout_s must be positive, got 0"),
        ('name = "x"\n[training.steps]\nmnist = 0\n', "training.steps.mnist must be at least 1"),
        ('name = "x"\n[training]\nsteps = -3\n', "training.steps.default must be at least 1"),
        (
            'name = "x"\n[backend_options]\nonnxruntime = 3\n',
            "'backend_options.onnxruntime' must be dict",
        ),
        ("description = 'no name'\n", "key 'name' is required"),
        (
            'name = "x"\nworker_timeout_s = nan\n',
            "worker_timeout_s must be a finite number, got nan",
        ),
        (
            'name = "x"\nworker_timeout_s = inf\n',
            "worker_timeout_s must be a finite number, got inf",
        ),
        (
            'name = "x"\n[training]\nlearning_rate = nan\n',
            "training.learning_rate must be a finite",
        ),
        ('name = "x"\n[latency]\nmin_seconds = -inf\n', "latency.min_seconds must be a finite"),
        (
            'name = "x"\n[backend_options.onnxruntime]\nscale = [1.0, nan]\n',
            "backend_options.onnxruntime.scale must be a finite number, got nan",
        ),
        ('name = "x"\nbatch_sizes = [1, 8, 1]\n', "batch_sizes lists 1 more than once ([1, 8, 1])"),
        ('name = "x"\nbackends = ["keras", "keras"]\n', "backends lists keras more than once"),
        (
            'name = "x"\n[training]\nbatch_size = 0\n',
            "training.batch_size must be at least 1, got 0",
        ),
        ('name = "x"\n[training]\nlearning_rate = 0\n', "training.learning_rate must be positive"),
        (
            'name = "x"\n[training]\ndropout = 2.0\n',
            "training.dropout must be at least 0 and below 1",
        ),
        (
            'name = "x"\n[training]\ndropout = 1.0\n',
            "training.dropout must be at least 0 and below 1",
        ),
        (
            'name = "x"\n[latency]\nmax_iterations = 0\n',
            "latency.max_iterations must be at least 1",
        ),
        (
            'name = "x"\n[latency]\nmax_seconds = 0\n',
            "latency.max_seconds must be positive, got 0.0",
        ),
        ('name = "../escape"\n', "name '../escape' cannot name a run folder; allowed: letters"),
        ('name = "a/b"\n', "name 'a/b' cannot name a run folder"),
        ('name = ".hidden"\n', "name '.hidden' cannot name a run folder"),
        ('name = ".."\n', "name '..' cannot name a run folder"),
        ('name = "bell\\u0007"\n', "name 'bell\\x07' cannot name a run folder"),
        ('name = ""\n', "name '' cannot name a run folder"),
        ('name = "x"\n[training\n', "not valid TOML"),
        (
            'name = "x"\n[mirrors]\nmnist = "mirror.example/mnist"\n',
            "mirrors.mnist must be a URL starting with https://, http:// or file://",
        ),
        ('name = "x"\n[mirrors]\ndefault = 3\n', "mirrors.default must be a URL"),
    ],
)
def test_malformed_suite_names_the_file_the_key_and_what_is_allowed(tmp_path, text, expected):
    path = write(tmp_path, text)
    with pytest.raises(SuiteError) as info:
        load_suite(path)
    assert path in str(info.value)
    assert expected in str(info.value)


def test_unknown_suite_name_lists_the_builtin_ones():
    with pytest.raises(SuiteError, match="neither a built-in suite \\(smoke, quick, book\\)"):
        load_suite("quik")


def test_cli_overrides_replace_single_fields_and_leave_the_rest():
    suite = load_suite("quick")
    changed = override(suite, backends=("onnxruntime",), steps=7, seed=None)
    assert changed.backends == ("onnxruntime",)
    assert changed.training.steps_for("mnist", "nopool") == 7
    assert changed.training.learning_rate == suite.training.learning_rate
    assert changed.seed == suite.seed
    assert changed.datasets == suite.datasets


@pytest.mark.parametrize("name", BUILTIN_SUITES)
def test_an_override_keeps_every_other_field_of_a_builtin_suite(name):
    suite = load_suite(name)
    changed = override(suite, seed=suite.seed + 1)
    assert changed.seed == suite.seed + 1
    assert replace(changed, seed=suite.seed, source=suite.source) == suite


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"seed": -1}, "seed must be between 0 and 4294967295, got -1"),
        ({"test_subset": -5}, "test_subset must be 0 (all) or a number of images, got -5"),
        ({"worker_timeout_s": 0.0}, "worker_timeout_s must be positive"),
        ({"batch_sizes": (0,)}, "batch_sizes must be positive integers, got [0]"),
        ({"steps": 0}, "training.steps.default must be at least 1, got 0"),
        ({"worker_timeout_s": float("nan")}, "worker_timeout_s must be a finite number, got nan"),
        ({"worker_timeout_s": float("inf")}, "worker_timeout_s must be a finite number, got inf"),
        ({"batch_sizes": (1, 1)}, "batch_sizes lists 1 more than once ([1, 1])"),
        ({"devices": ("cpu", "cpu")}, "devices lists cpu more than once"),
    ],
)
def test_cli_overrides_are_checked_like_a_suite_file(changes, expected):
    with pytest.raises(SuiteError) as info:
        override(load_suite("quick"), **changes)
    assert str(info.value).startswith("built-in suite 'quick' with the command line's changes: ")
    assert expected in str(info.value)


def test_a_suite_file_that_is_not_utf8_is_an_error_naming_it(tmp_path):
    path = tmp_path / "latin1.toml"
    path.write_bytes('name = "caf\u00e9"\n'.encode("latin-1"))
    with pytest.raises(SuiteError, match="not UTF-8 text") as info:
        load_suite(str(path))
    assert str(path) in str(info.value)


MODELS = {"book_cnn": ("pool", "nopool"), "mlp": ("dense256",)}
DATASETS = ("mnist", "cifar10")


def steps_table(tmp_path: Path, table: str) -> dict[str, int]:
    return load_suite(write(tmp_path, f'name = "x"\n[training.steps]\n{table}')).training.steps


def test_step_lookup_prefers_the_most_specific_key_naming_the_model(tmp_path):
    path = write(
        tmp_path,
        'name = "s"\n[training.steps]\n"mnist.book_cnn.pool" = 1\n"book_cnn.pool" = 2\n'
        '"mnist.pool" = 3\npool = 4\ncifar10 = 5\ndefault = 6\n',
    )
    recipe = load_suite(path).training
    assert recipe.steps_for("mnist", "pool", model="book_cnn") == 1
    assert recipe.steps_for("cifar10", "pool", model="book_cnn") == 2
    assert recipe.steps_for("mnist", "pool", model="other_cnn") == 3
    assert recipe.steps_for("cifar10", "pool", model="other_cnn") == 4
    assert recipe.steps_for("cifar10", "nopool", model="book_cnn") == 5
    assert recipe.steps_for("other", "nopool", model="book_cnn") == 6
    assert recipe.steps_for("mnist", "pool") == 3, "without a model, model keys are passed over"


def test_two_models_sharing_variant_names_get_budgets_of_their_own(tmp_path):
    path = write(tmp_path, 'name = "s"\n[training.steps]\nnopool = 120\n"book_cnn.nopool" = 400\n')
    recipe = load_suite(path).training
    assert recipe.steps_for("mnist", "nopool", model="book_cnn") == 400
    assert recipe.steps_for("mnist", "nopool", model="small_cnn") == 120


@pytest.mark.parametrize(
    "table",
    [
        '"book_cnn.nopool" = 400\n',
        "book_cnn.nopool = 400\n",
        "book_cnn = { nopool = 400 }\n",
        "[training.steps.book_cnn]\nnopool = 400\n",
    ],
)
def test_a_dotted_step_key_means_what_the_quoted_one_does(tmp_path, table):
    assert steps_table(tmp_path, table) == {"book_cnn.nopool": 400}


def test_a_step_key_given_quoted_and_dotted_is_an_error(tmp_path):
    path = write(
        tmp_path, 'name = "x"\n[training.steps]\n"book_cnn.nopool" = 1\nbook_cnn.nopool = 2\n'
    )
    with pytest.raises(SuiteError, match=r"training\.steps gives 'book_cnn\.nopool' twice"):
        load_suite(path)


def test_a_dotted_step_key_is_checked_like_the_others(tmp_path):
    with pytest.raises(SuiteError, match=r"training\.steps\.book_cnn\.nopool must be at least 1"):
        steps_table(tmp_path, "book_cnn.nopool = 0\n")


def test_step_keys_naming_known_datasets_models_and_variants_pass(tmp_path):
    table = (
        'default = 1\nmnist = 2\nnopool = 3\n"cifar10.pool" = 4\n"mlp.dense256" = 5\n'
        '"mnist.book_cnn.nopool" = 6\n'
    )
    suite = load_suite(write(tmp_path, f'name = "x"\n[training.steps]\n{table}'))
    suite.check_cell_keys(DATASETS, MODELS)


@pytest.mark.parametrize(
    ("key", "problem"),
    [
        ("pol", "neither default nor a dataset or a variant"),
        ("book_cnn.nopol", "model 'book_cnn' has no variant 'nopol' (its variants: pool, nopool)"),
        ("mlp.pool", "model 'mlp' has no variant 'pool' (its variants: dense256)"),
        ("bookcnn.pool", "'bookcnn' is neither a dataset nor a model"),
        ("mnist.nopol", "no model has variant 'nopol'"),
        ("mnst.book_cnn.pool", "'mnst' is not a dataset"),
        ("mnist.bookcnn.pool", "'bookcnn' is not a model"),
        ("mnist.mlp.pool", "model 'mlp' has no variant 'pool' (its variants: dense256)"),
        ("mnist.book_cnn.pool.x", "more than three names"),
    ],
)
def test_a_step_key_naming_nothing_known_is_an_error_naming_the_key_and_the_known_names(
    tmp_path, key, problem
):
    path = write(tmp_path, f'name = "x"\n[training.steps]\n"{key}" = 5\n')
    suite = load_suite(path)
    with pytest.raises(SuiteError) as info:
        suite.check_cell_keys(DATASETS, MODELS)
    assert str(info.value) == (
        f"{path}: training.steps key {key!r}: {problem}; keys are default, "
        "DATASET.MODEL.VARIANT, MODEL.VARIANT, DATASET.VARIANT, VARIANT, DATASET; datasets: "
        "cifar10, mnist; models and their variants: book_cnn: pool/nopool, mlp: dense256"
    )


@pytest.mark.parametrize("name", BUILTIN_SUITES)
def test_the_builtin_suites_step_keys_name_first_party_objects(name):
    load_suite(name).check_cell_keys(DATASETS, {"book_cnn": ("pool", "nopool")})
