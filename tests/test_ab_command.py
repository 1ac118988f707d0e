"""``harness ab``: bad input is exit 2 before anything is trained or started."""

from __future__ import annotations

import pytest

from harness.cli import main
from harness.commands.ab import parse_option


@pytest.mark.parametrize(
    "text, expected",
    [
        ("onnxruntime.intra_op_threads=1", ("onnxruntime", "intra_op_threads", 1)),
        ("keras.jit_compile=true", ("keras", "jit_compile", True)),
        ('onnxruntime.execution_mode="parallel"', ("onnxruntime", "execution_mode", "parallel")),
        ("onnxruntime.execution_mode=parallel", ("onnxruntime", "execution_mode", "parallel")),
    ],
)
def test_an_option_is_backend_key_and_a_toml_value(text, expected):
    assert parse_option(text, "--new-option") == expected


@pytest.mark.parametrize(
    "args, message",
    [
        (["--new-option", "intra_op_threads=1"], "expected BACKEND.KEY=VALUE"),
        (["--new-option", "keras.jit_compile=true", "--backend", "onnxruntime"], "'keras'"),
        (["--pairs", "8"], "needs at least"),
        (["--workers", "0"], "--workers must be at least 1"),
        (["--trial-seconds", "0"], "--trial-seconds must be in (0, 60]"),
        (["--new-python", "/no/such/python"], "not an executable file"),
        (["--serving-rounds", "-1"], "--serving-rounds must be 0 or more"),
        (["--serving-rounds", "2"], "the suite's [serving] selects none of these cells"),
    ],
)
def test_bad_input_is_exit_2_naming_it(args, message, tmp_path, capsys):
    code = main(["ab", "--suite", "smoke", "--out", str(tmp_path / "ab"), *args])
    assert code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "ab").exists()  # nothing made, nothing trained
