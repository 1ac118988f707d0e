"""CIFAR-10 dataset plugin: the "python version" archive or its extracted folder."""

from collections.abc import Callable

from harness.api import Dataset, hookimpl
from harness_cifar10.dataset import Cifar10Dataset


@hookimpl
def register_datasets(register: Callable[[Dataset], None]) -> None:
    register(Cifar10Dataset())
