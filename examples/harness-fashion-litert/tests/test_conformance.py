"""The harness's conformance kit on this package's three plugins, as discovered once installed."""

from pathlib import Path

import pytest

from harness import testing
from harness.api import Backend, Dataset, ModelSpec
from harness_fashion_litert.fashion_mnist import write_synthetic


@pytest.mark.parametrize("dataset", testing.discovered_datasets("fashion_mnist"))
def test_dataset_conforms(dataset: Dataset, tmp_path: Path) -> None:
    write_synthetic(tmp_path, train=20, test=10)
    testing.check_dataset(dataset, tmp_path, splits=("train", "test"))


@pytest.mark.slow
@pytest.mark.parametrize("spec", testing.discovered_models("mlp"))
def test_model_conforms(spec: ModelSpec) -> None:
    testing.check_model(spec, (28, 28, 1), num_classes=10)


@pytest.mark.slow
@pytest.mark.parametrize("backend", testing.discovered_backends("litert"))
def test_backend_conforms(backend: Backend, tmp_path: Path) -> None:
    testing.check_backend_on_reference(backend, tmp_path)
