"""One module per ``harness`` subcommand; each defines ``add_arguments(parser)`` and ``run(args)``.

Command modules are imported to build the parser, so they import heavy libraries inside ``run``.
"""
