"""MNIST dataset plugin: the four canonical IDX files, gzipped or not."""

from collections.abc import Callable

from harness.api import Dataset, hookimpl
from harness_mnist.dataset import MnistDataset


@hookimpl
def register_datasets(register: Callable[[Dataset], None]) -> None:
    register(MnistDataset())
