"""The `mnist-sweep` command line: parses options, calls the library, reports errors plainly."""

from __future__ import annotations

import functools
import sys

import click

from .errors import ConfigError, DataError, SweepError

EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130


class UserError(click.ClickException):
    """An error shown as `Error: ...` without a traceback, with its own exit code."""

    def __init__(self, message: str, exit_code: int = 1):
        super().__init__(message)
        self.exit_code = exit_code


def reports_errors(command):
    """Turn the library's errors into `Error: ...` lines: exit 2 for bad input, 1 otherwise."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except (ConfigError, DataError) as exc:
            raise UserError(str(exc), EXIT_BAD_INPUT) from None
        except SweepError as exc:
            raise UserError(str(exc)) from None

    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="mnist-sweep")
def cli():
    """Run Keras experiment sweeps on MNIST from one YAML file.

    \b
    Example:
        mnist-sweep run configs/regularization.yaml
    """


@cli.command()
@click.argument("config", type=click.Path(dir_okay=False))
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a config key; the value is YAML (repeatable), e.g. --set model.dropout=[0,0.5].")
@click.option("--dry-run", is_flag=True, help="List the trials and their count; train nothing.")
@click.option("--out", default="results", show_default=True, type=click.Path(file_okay=False),
              help="Results root; the sweep goes to OUT/<name>/.")
@click.option("--force", is_flag=True, help="Retrain every trial, even those already finished.")
@click.option("--device", type=click.Choice(["auto", "cpu", "gpu"]), default="auto", show_default=True,
              help="Where to train; gpu fails if none is visible.")
@click.option("--quiet", "-q", is_flag=True, help="Print nothing but errors.")
@reports_errors
def run(config, overrides, dry_run, out, force, device, quiet):
    """Train every trial of a sweep CONFIG and record the results.

    Trials already finished in OUT/<name>/ are skipped, so an interrupted
    sweep continues where it stopped. Exits 1 if any trial failed.

    \b
    Examples:
        mnist-sweep run configs/regularization.yaml
        mnist-sweep run configs/smoke.yaml --set train.epochs=2 --dry-run
    """
    from .config import load_config

    sweep_config = load_config(config, overrides)
    if dry_run:
        _print_trials(sweep_config)
        return
    from .progress import make_progress
    from .runner import Sweep

    progress = make_progress(quiet)
    sweep = Sweep(sweep_config, out, progress)
    report = sweep.run(force=force, device=device, warn=_warn)
    if report.interrupted:
        sys.exit(EXIT_INTERRUPTED)
    if report.failed:
        raise UserError(f"{report.failed} trial(s) failed; their errors are in {report.directory}/runs/*/trial.json")


def _warn(message: str) -> None:
    click.secho(f"Warning: {message}", fg="yellow", err=True)


def _print_trials(sweep_config) -> None:
    """The dry-run table: one row per trial with the settings that vary."""
    from rich.console import Console
    from rich.table import Table

    from .grid import expand, varying_settings

    trials = expand(sweep_config)
    factors = varying_settings(trials)
    table = Table(title=f"{sweep_config.name}: {len(trials)} trials", title_justify="left")
    table.add_column("trial_id", overflow="fold")
    for column in ("seed", *factors):
        table.add_column(column)
    for trial in trials:
        table.add_row(trial.trial_id, str(trial.seed), *(str(trial.factors[f]) for f in factors))
    console = Console(soft_wrap=True)
    console.print(table)
    configs = len({t.config_id for t in trials})
    console.print(f"{len(trials)} trials ({configs} configurations x {len(sweep_config.seeds)} seeds)")


def main():
    cli(prog_name="mnist-sweep")


if __name__ == "__main__":
    main()
