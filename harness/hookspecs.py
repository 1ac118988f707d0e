"""Every hook a plugin can implement. Hooks only discover; the objects they register do the work.

Each hook receives a ``register`` callback and calls it once per object it contributes. The
order in which plugins are called is not specified: the registry sorts what it collects.
"""

from collections.abc import Callable

import pluggy

from harness import PROJECT_NAME
from harness.api import Backend, Dataset, ModelSpec

hookspec = pluggy.HookspecMarker(PROJECT_NAME)


@hookspec
def register_datasets(register: Callable[[Dataset], None]) -> None:
    """Contribute datasets.

    Called once per process, when the plugin manager builds the registry (on the first command
    that needs datasets). Call ``register(dataset)`` for each :class:`harness.api.Dataset`
    instance the plugin provides. A name already registered by another plugin is an error that
    names both plugins (the harness's own plugins keep theirs). Returns nothing.
    """


@hookspec
def register_models(register: Callable[[ModelSpec], None]) -> None:
    """Contribute model specifications.

    Called once per process, when the registry is built. Call ``register(spec)`` for each
    :class:`harness.api.ModelSpec` instance; its ``variants`` say which configurations of the
    model the planner may ask for. Returns nothing.
    """


@hookspec
def register_backends(register: Callable[[Backend], None]) -> None:
    """Contribute inference backends.

    Called once per process (the runner and each worker process), when the registry is built.
    Call ``register(backend)`` for each :class:`harness.api.Backend` instance. Registering must
    be cheap: import heavy runtimes inside ``Backend.prepare``, not at module level, so that
    ``harness list`` stays fast. Returns nothing.
    """
