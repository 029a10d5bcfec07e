"""The ``omni`` command. Executor packages add subcommands via the ``omni.cli`` entry points."""
