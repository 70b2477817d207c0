"""Backups and the restore drill, in Flask-Migrate's ``db`` group: ``flask db backup`` (dump.py),
``flask db restore`` (restore.py) and ``flask db drill`` (drill.py). What they share, the
databases and the PostgreSQL client tools, is in databases.py and pg_tools.py."""

from ecommerce.cli.backups.drill import (
    DRILL_TABLES,
    TableComparison,
    TableFigures,
    compare_figures,
    comparison_table,
    drill_command,
    figures_of,
)
from ecommerce.cli.backups.dump import backup_command
from ecommerce.cli.backups.restore import restore_command

BACKUP_COMMANDS = (backup_command, restore_command, drill_command)

__all__ = [
    "BACKUP_COMMANDS",
    "DRILL_TABLES",
    "TableComparison",
    "TableFigures",
    "compare_figures",
    "comparison_table",
    "figures_of",
]
