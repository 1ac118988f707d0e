"""``harness data path|fetch|verify`` on generated files."""

import numpy as np
import pytest

from harness.cli import main
from harness.idx import write_idx
from harness.plugins import ALLOW_ENV, reset_host
from harness.synthetic import write_all


@pytest.fixture(autouse=True)
def only_dataset_plugins(monkeypatch):
    monkeypatch.setenv(ALLOW_ENV, "mnist,cifar10")
    reset_host()
    yield
    reset_host()


def test_verify_reports_each_dataset_ok_with_counts_per_class(tmp_path, capsys):
    write_all(tmp_path, train=50, test=20, seed=0)

    code = main(["data", "verify", "--data-dir", str(tmp_path)])

    out = capsys.readouterr().out
    assert code == 0
    assert "mnist: OK: train 50 (canonical 60,000), test 20 (canonical 10,000)" in out
    assert "cifar10: OK: train 50 (canonical 50,000)" in out
    assert "  train per class: 0 5, 1 5," in out
    assert "  train per class: airplane 5, automobile 5," in out
    assert "warning: mnist train split" in out


def test_verify_exits_2_naming_a_bad_file(tmp_path, capsys):
    write_all(tmp_path, train=20, test=10, seed=0)
    bad = write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.full(10, 12, np.uint8))

    code = main(["data", "verify", "mnist", "--data-dir", str(tmp_path)])

    out = capsys.readouterr().out
    assert code == 2
    assert f"mnist: FAILED: {bad}: label out of range" in out


def test_path_uses_the_environment_and_lists_present_and_missing_files(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.setenv("HARNESS_DATA_DIR", str(tmp_path))
    write_all(tmp_path, train=10, test=10, seed=0)
    (tmp_path / "train-images-idx3-ubyte.gz").unlink()

    code = main(["data", "path"])

    out = capsys.readouterr().out
    assert code == 0
    assert f"data folder: {tmp_path} (from $HARNESS_DATA_DIR)" in out
    assert "cifar10: present" in out
    assert "  missing  train-images-idx3-ubyte.gz" in out
    assert "  present  train-labels-idx1-ubyte.gz" in out


def test_fetch_with_everything_present_downloads_nothing(tmp_path, capsys):
    write_all(tmp_path, train=10, test=10, seed=0)

    code = main(["data", "fetch", "--data-dir", str(tmp_path)])

    assert code == 0
    assert f"mnist: already present in {tmp_path}" in capsys.readouterr().out


def test_an_unknown_dataset_is_a_usage_error(tmp_path, capsys):
    assert main(["data", "verify", "imagenet", "--data-dir", str(tmp_path)]) == 2
    assert "unknown dataset 'imagenet'" in capsys.readouterr().err


def test_verify_fails_a_split_of_0_images(tmp_path, capsys):
    from harness.synthetic import write_mnist

    write_mnist(tmp_path, train=20, test=0)

    assert main(["data", "verify", "mnist", "--data-dir", str(tmp_path)]) == 2
    out = capsys.readouterr().out
    assert f"mnist: FAILED: mnist test split in {tmp_path}: the split holds 0 images" in out
