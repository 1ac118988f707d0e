"""Shared fixtures: a fresh plugin host per test, and in-test plugin registration."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from harness import plugins


@pytest.fixture(autouse=True)
def fresh_plugin_host() -> Iterator[None]:
    """Each test discovers plugins anew: nothing registered by one test leaks into the next."""
    plugins.reset_host()
    yield
    plugins.reset_host()


@pytest.fixture
def register_plugin() -> Iterator[Callable[[Any, str], None]]:
    """Register a plugin object in the process-wide host for one test; unregistered after."""
    names: list[str] = []

    def register(plugin: Any, name: str) -> None:
        plugins.get_host().register(plugin, name=name)
        names.append(name)

    try:
        yield register
    finally:
        host = plugins.get_host()
        for name in names:
            if host.pm.has_plugin(name):
                host.unregister(name)


@pytest.fixture
def make_distribution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Path]:
    """Put a throwaway distribution on sys.path: a module plus a ``*.dist-info`` folder whose
    ``entry_points.txt`` declares it in group ``harness``. Real entry-point discovery, no mocks.
    """
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))

    def make(dist_name: str, module_name: str, source: str, entry_name: str | None = None) -> Path:
        (site / f"{module_name}.py").write_text(source)
        # The folder name carries the normalized name (importlib.metadata dedups by it).
        info = site / f"{dist_name.replace('-', '_')}-1.0.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist_name}\nVersion: 1.0\n")
        (info / "entry_points.txt").write_text(
            f"[harness]\n{entry_name or module_name} = {module_name}\n"
        )
        sys.modules.pop(module_name, None)
        return site

    return make


@pytest.fixture(scope="session")
def book_cnn_mnist(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The book's CNN (pool) trained 30 steps on learnable synthetic MNIST, with Keras's logits
    on 64 test images (a ``harness.testing.Reference``): the real layer shapes, and logits far
    enough apart for int8 to keep most predictions. Tests that convert copy ``trained`` to an
    ``artifact_dir`` of their own."""
    from harness import testing
    from harness.api import write_mnist
    from harness.plugins import get_registry

    root = tmp_path_factory.mktemp("book_cnn_mnist")
    write_mnist(root / "data", train=300, test=64, seed=0)
    registry = get_registry()
    mnist = registry.dataset("mnist")
    return testing.train_reference(
        root / "model",
        spec=registry.model("book_cnn"),
        variant="pool",
        data=mnist.load_checked(root / "data", "train"),
        steps=30,
        eval_images=mnist.load_checked(root / "data", "test").images,
    )
