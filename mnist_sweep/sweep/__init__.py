"""The sweep driver: one run of a config, from pending trials to recorded results, and its progress display.

The only layer that writes results while trials run; it drives a schedule, an executor and the store.
"""

from .runner import Observers, Progress, Sweep, SweepReport, run_sweep

__all__ = ["Observers", "Progress", "Sweep", "SweepReport", "run_sweep"]
