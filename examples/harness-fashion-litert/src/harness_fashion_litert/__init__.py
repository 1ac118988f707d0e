"""Example third-party plugins for the harness, installed with pip beside it.

Each module is its own plugin (entry point in group ``harness``): ``fashion_mnist`` (a
dataset), ``mlp`` (a model without convolutions) and ``litert`` (the LiteRT runtime as a
backend). ``docs/plugins.md`` in the harness walks through them.
"""
