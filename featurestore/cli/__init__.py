"""The ``featurestore`` command line: one module per group of commands, one error handler."""

from featurestore.cli import (  # noqa: F401
    drift_cmds,
    gc_cmds,
    lineage_cmds,
    migrate_cmds,
    monitoring_online_cmds,
    offline_cmds,
    online_cmds,
    push_cmds,
    registry_cmds,
    ui_cmds,
    validate_cmds,
)
from featurestore.cli.app import app, main, order_commands

order_commands()

__all__ = ["app", "main"]
