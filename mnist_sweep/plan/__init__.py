"""Planning: which trials a config makes, with stable ids. Pure: no data, no Keras, no results.

Imports only `config/`, `records` and `errors`.
"""

from .grid import Trial, base_settings, expand, label, make_trial, resolve_settings, varying_settings

__all__ = ["Trial", "base_settings", "expand", "label", "make_trial", "resolve_settings", "varying_settings"]
