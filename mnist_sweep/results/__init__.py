"""The results directory: atomic writes, the lock, resume, damaged files, and reading results back.

Knows the records (`records`), never the config schema, training or analysis.
"""

from .damage import report as report_damage
from .store import (HISTORY_COLUMNS, ResultsStore, atomic_write, find_sweeps, load_histories, load_results,
                    read_records, search_method, setting_columns, summary_columns, summary_row)

__all__ = ["HISTORY_COLUMNS", "ResultsStore", "atomic_write", "find_sweeps", "load_histories",
           "load_results", "read_records", "report_damage", "search_method", "setting_columns", "summary_columns",
           "summary_row"]
