"""A pluggy-based benchmark harness for CNN inference on Keras and ONNX Runtime."""

import pluggy

__version__ = "0.1.0"

PROJECT_NAME = "harness"
"""The pluggy project name, the hook marker name and the entry-point group, all in one."""

hookimpl = pluggy.HookimplMarker(PROJECT_NAME)

__all__ = ["PROJECT_NAME", "__version__", "hookimpl"]
