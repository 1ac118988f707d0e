"""The command line: entry points, exit codes, errors without tracebacks, a fast `list`."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from harness.cli import main


def test_python_dash_m_harness_runs_the_cli():
    result = subprocess.run(
        [sys.executable, "-m", "harness", "--version"], capture_output=True, text=True
    )
    assert result.returncode == 0
    assert result.stdout.startswith("harness ")


def test_list_imports_neither_tensorflow_nor_keras():
    code = (
        "import sys\n"
        "from harness.cli import main\n"
        "main(['list', '--json'])\n"
        "print('tensorflow' in sys.modules, 'keras' in sys.modules, file=sys.stderr)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip().splitlines()[-1] == "False False"


def test_bad_suite_is_exit_2_with_a_message(tmp_path, capsys):
    suite = tmp_path / "bad.toml"
    suite.write_text('name = "bad"\nbatch_sizes = "one"\n')
    assert main(["run", "--suite", str(suite), "--out", str(tmp_path / "runs")]) == 2
    assert f"{suite}: key 'batch_sizes' must be list" in capsys.readouterr().err


def test_resume_of_a_folder_that_is_not_a_run_is_exit_2(tmp_path, capsys):
    assert main(["run", "--resume", str(tmp_path)]) == 2
    assert "not a run folder" in capsys.readouterr().err


def test_run_quiets_tensorflow_info_lines_unless_the_user_chose(tmp_path, monkeypatch):
    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL", raising=False)
    main(["run", "--resume", str(tmp_path)])
    assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "2"
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "0")
    main(["run", "--resume", str(tmp_path)])
    assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "0"


def test_resume_refuses_flags_that_would_change_the_plan(tmp_path, capsys):
    assert main(["run", "--resume", str(tmp_path), "--seed", "3", "--backend", "keras"]) == 2
    err = capsys.readouterr().err
    assert "--resume finishes a run with the plan it started with; drop --backend, --seed" in err


def test_resume_of_a_journal_that_is_not_text_is_exit_2_naming_it(tmp_path, capsys):
    (tmp_path / "journal.jsonl").write_bytes(b'{"type": "run"}\n\xff\xfe\x00garbage\n')
    assert main(["run", "--resume", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path / 'journal.jsonl'}:2: not UTF-8 text" in err


def test_a_bad_plan_fails_before_making_a_run_folder(tmp_path, capsys):
    out = tmp_path / "runs"
    assert main(["run", "--suite", "smoke", "--backend", "tensorrt", "--out", str(out)]) == 2
    assert "unknown backend 'tensorrt'" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (["--timeout", "nan"], "worker_timeout_s must be a finite number, got nan"),
        (["--timeout", "inf"], "worker_timeout_s must be a finite number, got inf"),
        (["--batch-size", "1", "--batch-size", "1"], "batch_sizes lists 1 more than once"),
        (["--batch-size", "100000000000"], "batch_sizes holds 100,000,000,000, above the"),
        (["--memory-limit", "-1"], "worker_memory_limit_mb must be 0 (half the machine's"),
        (
            ["--memory-limit", "1", "--batch-size", "512"],
            "batch_sizes holds 512: a batch of 512 mnist images (28x28x1) needs 2 MiB as float32 "
            "for its input alone, above the worker memory limit of 1 MiB",
        ),
    ],
)
def test_a_bad_flag_value_is_exit_2_naming_it_before_a_run_folder(
    tmp_path, capsys, flags, expected
):
    out = tmp_path / "runs"
    assert main(["run", "--suite", "smoke", *flags, "--out", str(out)]) == 2
    assert expected in capsys.readouterr().err
    assert not out.exists()


def test_a_split_of_0_images_is_exit_2_naming_it_before_training(tmp_path, capsys):
    from harness.synthetic import write_mnist

    data = write_mnist(tmp_path / "data", train=20, test=0)[0].parent
    argv = ["run", "--suite", "quick", "--dataset", "mnist", "--data-dir", str(data)]
    assert main([*argv, "--out", str(tmp_path / "runs"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert (
        f"error: mnist test split in {data}: the split holds 0 images, expected at least 1" in err
    )


def test_a_data_error_is_exit_2_naming_the_file_before_a_run_folder_is_made(tmp_path, capsys):
    from harness.synthetic import write_mnist

    data = write_mnist(tmp_path / "data", train=20, test=5)[0].parent
    labels = data / "t10k-labels-idx1-ubyte.gz"
    labels.write_bytes(labels.read_bytes()[:-9])  # cut short, as a broken copy is
    argv = ["run", "--suite", "quick", "--dataset", "mnist", "--data-dir", str(data)]
    assert main([*argv, "--out", str(tmp_path / "runs"), "--no-progress"]) == 2
    assert "t10k-labels-idx1-ubyte" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_a_sigterm_whose_handler_ran_in_a_weakref_callback_still_stops_the_command():
    """Python drops an exception raised in a weakref callback; the SIGTERM must not be lost."""
    import signal
    import time
    import weakref

    from harness.cli import EXIT_TERMINATED, guarded

    class Owner:
        pass

    def callback(_ref: object) -> None:
        os.kill(os.getpid(), signal.SIGTERM)
        sum(range(100_000))  # the handler runs in here; its exception is dropped

    def command() -> int:
        owner = Owner()
        ref = weakref.ref(owner, callback)
        del owner
        time.sleep(3)
        return 0 if ref is not None else 1

    started = time.monotonic()
    assert guarded("test", command) == EXIT_TERMINATED
    assert time.monotonic() - started < 2
