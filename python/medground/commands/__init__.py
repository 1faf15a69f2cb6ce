"""Model commands of the ``medground`` CLI: ground, refer, segment, chat.

Each module has ``add_arguments(parser)`` and ``run(args) -> int`` (see
``medground.cli``); they share the options and output of :mod:`._common`.
"""
