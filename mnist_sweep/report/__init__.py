"""Figures and report.html (the `plot` command): each figure function returns a matplotlib Figure.

Built on `analysis/`; draws a model's architecture through `training/` only when asked to.
"""

from .plot import plot_results

__all__ = ["plot_results"]
