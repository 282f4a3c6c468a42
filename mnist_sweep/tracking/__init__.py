"""Experiment trackers: a sweep in TensorBoard (live, with HParams) and in MLflow.

Both are optional extras; each entry point checks its package first and says how to install it.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import ResultsError, cannot_write, require

__all__ = ["export_mlflow", "export_tensorboard", "live_tensorboard", "require"]


def live_tensorboard(logdir: str | Path, sweep, needed_by: str = "--tensorboard"):
    """A sweep observer that writes each trial's TensorBoard run as it trains."""
    require("tensorboard", needed_by)
    from .tensorboard_log import TensorBoardLog

    return TensorBoardLog(logdir, sweep)


def export_tensorboard(results: str | Path, logdir: str | Path):
    """Finished results as TensorBoard event files; see `tensorboard_log.export_tensorboard`."""
    require("tensorboard", "--to tensorboard")
    from .tensorboard_log import export_tensorboard as export

    try:
        return export(results, logdir)
    except OSError as exc:
        raise cannot_write(logdir, exc, "TensorBoard event files") from None


def export_mlflow(results: str | Path, tracking_uri: str | None = None):
    """Finished results as MLflow runs; see `mlflow_runs.export_mlflow`.

    The tracking URI is checked first (its scheme, its database driver, that its server answers), so a
    store that cannot work fails at once with exit 2, never after a minute of retries.
    """
    require("mlflow", "--to mlflow")
    from mlflow.exceptions import MlflowException
    from sqlalchemy.exc import SQLAlchemyError

    from .mlflow_runs import export_mlflow as export

    try:
        return export(results, tracking_uri)
    except MlflowException as exc:
        where = tracking_uri or "the default store in the results root"
        raise ResultsError(f"could not export to MLflow at {where}: {exc.message.strip().splitlines()[0]}") from None
    except SQLAlchemyError as exc:  # the database itself (locked, full, damaged): a line, not a traceback
        where = tracking_uri or "the default store in the results root"
        reason = (str(getattr(exc, "orig", None) or exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        raise ResultsError(f"could not export to MLflow at {where}: database error: {reason}; run the export "
                           "again (it adds nothing twice)") from None
    except OSError as exc:
        raise ResultsError(f"cannot write MLflow artifacts: {exc.strerror or exc}") from None
