"""The `mnist-sweep` command line: parses options, calls the library, reports errors plainly."""

from __future__ import annotations

import functools
import os
import sys

import click

from .errors import (ConfigError, DamagedResultsError, DataError, MissingExtraError, OptionError, SetupError,
                     SweepError)
from .metrics import METRICS
from .records import DEFAULT_MAX_BRANCHES

EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130
SETTING_TYPED_AS = "mnist_sweep.setting_typed_as"  # ctx.meta key: the name the user gave --setting by


class UserError(click.ClickException):
    """An error shown as `Error: ...` without a traceback, with its own exit code."""

    def __init__(self, message: str, exit_code: int = 1):
        super().__init__(message)
        self.exit_code = exit_code  # type: ignore[misc]  # click's stub makes it a ClassVar; an instance's own is how click reads it


def reports_errors(command):
    """Turn the library's errors into `Error: ...` lines: exit 2 for bad input or environment, 1 otherwise."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except OptionError as exc:
            raise UserError(named_as_typed(exc), EXIT_BAD_INPUT) from None
        except (ConfigError, DataError, DamagedResultsError, MissingExtraError, SetupError) as exc:
            raise UserError(str(exc), EXIT_BAD_INPUT) from None
        except SweepError as exc:
            raise UserError(str(exc)) from None

    return wrapper


def setting_option(help: str, alias: str):
    """The --setting option (one trial setting, e.g. activation), with its old name `alias` still accepted
    but left out of --help, so that one concept has one name on every command."""
    alias_dest = alias.lstrip("-").replace("-", "_")

    def decorate(command):
        @functools.wraps(command)
        def wrapper(*args, setting, **kwargs):
            old = kwargs.pop(alias_dest)
            if setting is not None and old is not None:
                raise UserError(f"--setting and {alias} are the same option; give it once", EXIT_BAD_INPUT)
            click.get_current_context().meta[SETTING_TYPED_AS] = alias if old is not None else "--setting"
            return command(*args, setting=old if old is not None else setting, **kwargs)

        wrapper = click.option(alias, alias_dest, metavar="SETTING", hidden=True)(wrapper)
        return click.option("--setting", metavar="SETTING", help=help)(wrapper)

    return decorate


def named_as_typed(exc: OptionError) -> str:
    """The error's text naming the setting option as the user typed it (the library calls it --factor in
    compare, --group-by in plot)."""
    ctx = click.get_current_context(silent=True)
    typed = ctx.meta.get(SETTING_TYPED_AS) if ctx is not None else None
    if typed is None or exc.option not in ("--setting", "--factor", "--group-by"):
        return str(exc)
    return typed + str(exc)[len(exc.option):]  # OptionError's text is "OPTION: message"


class Size(click.ParamType):
    """A size in bytes: 2GiB, 512MiB, 1.5G, 2GB or plain bytes."""

    name = "size"

    def convert(self, value, param, ctx):
        if isinstance(value, int):
            return value
        from .plan.grouping import parse_size

        try:
            return parse_size(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


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
@click.option("--jobs", "-j", default="1", show_default=True, metavar="N|auto",
              help="Trials at once, each in a long-lived worker process; auto = one per core (two per GPU).")
@click.option("--executor", type=click.Choice(["auto", "process", "ray"]), default="auto", show_default=True,
              help="auto: in this process for --jobs 1, worker processes otherwise; ray: Ray tasks.")
@click.option("--backend", type=click.Choice(["tensorflow", "jax", "torch"]), default=None,
              help="Keras backend for the trials [default: tensorflow, or $KERAS_BACKEND].")
@click.option("--gpus", default=None, metavar="0,1", help="GPU indices to spread workers over.")
@click.option("--ray-address", default=None, metavar="ADDR",
              help="Ray cluster to join (`ray start --head` prints it); default: start a local one.")
@click.option("--cpus-per-trial", type=click.FloatRange(min=0.01), default=1.0, show_default=True,
              help="Ray: CPUs each trial (or fused group) reserves, and its thread count.")
@click.option("--gpus-per-trial", type=click.FloatRange(min=0.0), default=0.0, show_default=True,
              help="Ray: GPUs (fractions allowed) each trial (or fused group) reserves.")
@click.option("--fuse/--no-fuse", default=None,
              help="Train compatible trials as one model, each with its own weights and results, or each alone: "
                   "dense ones that share batch size and epochs stack, convolutional or augmented ones that "
                   "share seed, batch size, epochs and optimizer are branch sub-models. "
                   "Default: the config's `execution` (auto: fused).")
@click.option("--max-branches", type=click.IntRange(min=1), default=DEFAULT_MAX_BRANCHES, show_default=True,
              help="Most trials in one fused model; with --stack-memory, both limits apply.")
@click.option("--stack-memory", type=Size(), default="2GiB",  # records.DEFAULT_STACK_MEMORY
              metavar="SIZE", show_default=True,
              help="Most memory one stacked model may need while training, estimated before it is built; "
                   "a larger group is split, a larger trial trains alone. E.g. --stack-memory 512MiB "
                   "(K, M, G, T are binary; KB, MB, GB decimal; plain numbers are bytes).")
@click.option("--tensorboard", "tensorboard", metavar="DIR", type=click.Path(file_okay=False),
              help="Write each trial's curves and HParams session to DIR/<name>/ as it trains "
                   "(`tensorboard --logdir DIR`; needs mnist-sweep[tensorboard]).")
@click.option("--max-trials", type=click.IntRange(min=1), default=None, metavar="N",
              help="Refuse a sweep of more trials, counted from its axes before any is built [default: 100000].")
@click.option("--quiet", "-q", is_flag=True, help="Print nothing but errors.")
@reports_errors
def run(config, overrides, dry_run, out, force, device, jobs, executor, backend, gpus, ray_address,
        cpus_per_trial, gpus_per_trial, fuse, max_branches, stack_memory, tensorboard, max_trials, quiet):
    """Train every trial of a sweep CONFIG and record the results.

    Trials already finished in OUT/<name>/ are skipped, so an interrupted
    sweep continues where it stopped. The first Ctrl-C lets running trials
    finish; a second, SIGTERM or SIGHUP stops at once. Exits 1 if any trial
    failed, 130 when interrupted.

    \b
    Examples:
        mnist-sweep run configs/regularization.yaml
        mnist-sweep run configs/smoke.yaml --set train.epochs=2 --dry-run
        mnist-sweep run configs/regularization.yaml --jobs auto
        mnist-sweep run configs/regularization.yaml --no-fuse --jobs 2
        mnist-sweep run configs/regularization.yaml --stack-memory 512MiB --dry-run
        mnist-sweep run configs/regularization.yaml --executor ray --ray-address 10.0.0.5:6379
        mnist-sweep run configs/regularization.yaml --tensorboard runs/tb
    """
    from .config import load_config
    from .sweep.progress import keep_going_without_output

    keep_going_without_output()  # a closed pipe (`2>&1 | head`) or terminal drops the output, never the sweep
    sweep_config = load_config(config, overrides, max_trials)
    from .execution.executors import Options

    gpu_list = tuple(g.strip() for g in gpus.split(",") if g.strip()) if gpus else ()
    try:
        if dry_run:
            if sweep_config.search.method != "grid":
                _print_search(sweep_config)
            else:
                _print_trials(sweep_config, max_trials)
            from .sweep.runner import planned_grouping

            for line in planned_grouping(sweep_config, Options(fuse=fuse, max_branches=max_branches,
                                                               stack_memory=stack_memory), max_trials):
                click.echo(line)
            return
        from .backend import check_backend
        from .sweep.progress import make_progress

        check_backend(backend)  # KERAS_BACKEND=bogus or uninstalled: exit 2 before anything is written
        from .sweep.runner import Sweep

        progress = make_progress(quiet)
        sweep = Sweep(sweep_config, out, progress, tensorboard, max_trials)  # counts and builds the trials
    except ConfigError as exc:  # found after loading (too many trials): name the file all the same
        raise ConfigError(exc.problems, exc.source or config) from None

    options = Options(jobs=_parse_jobs(jobs, device, gpu_list), backend=backend, device=device, gpus=gpu_list,
                      ray_address=ray_address, cpus_per_trial=cpus_per_trial, gpus_per_trial=gpus_per_trial,
                      fuse=fuse, max_branches=max_branches, stack_memory=stack_memory)
    try:
        report = sweep.run(force=force, options=options, executor=executor, warn=_warn)
    except KeyboardInterrupt:  # a stop signal before the first trial (nothing kept) or while finishing up
        sys.exit(EXIT_INTERRUPTED)
    if report.interrupted:
        sys.exit(EXIT_INTERRUPTED)
    if not quiet:
        _print_next_steps(report.directory)
    if report.failed:
        raise UserError(f"{report.failed} trial(s) failed; their errors are in {report.directory}/runs/*/trial.json")


def _print_next_steps(directory) -> None:
    """After a run: the best configurations by validation accuracy, and the commands that come next."""
    from rich.console import Console

    from .analysis.show import after_run

    shown = after_run(directory)
    console = Console(width=None if sys.stdout.isatty() else 160, highlight=False, soft_wrap=True)
    if shown.body is not None:
        console.print(shown.body)
    for line in shown.notes:
        console.print(line if line.endswith(":") else f"  {line}", markup=False)


def _parse_jobs(jobs: str, device: str, gpus: tuple) -> int:
    from .execution.executors import auto_jobs

    if jobs == "auto":
        return auto_jobs(device, gpus)
    try:
        count = int(jobs)
    except ValueError:
        count = 0
    if count < 1:
        raise click.BadParameter(f"{jobs!r} is not a positive whole number or 'auto'", param_hint="--jobs")
    return count


def _warn(message: str) -> None:
    click.secho(f"Warning: {message}", fg="yellow", err=True)


def _warn_damaged(lines: list[str]) -> None:
    """Each damaged results file (or row) that was left out, as a warning on stderr."""
    for line in lines:
        _warn(f"damaged results: {line}")


def _warn_left_out(lines: list[str]) -> None:
    """Each results file an export left out (a link, which is not followed; a damaged record), as a warning."""
    for line in lines:
        _warn(f"left out of the export: {line}")


def _print_trials(sweep_config, max_trials: int | None = None) -> None:
    """The dry-run table: one row per trial with the settings that vary."""
    from rich.console import Console
    from rich.table import Table

    from .plan.grid import expand, varying_settings

    trials = expand(sweep_config, max_trials)
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
    race = sweep_config.race
    if race is None:
        console.print(f"{len(trials)} trials ({configs} configurations x {len(sweep_config.seeds)} seeds)")
        return
    metric = sweep_config.race_metric or "val_accuracy"
    console.print(f"Raced ({race.mode}, on {metric}): at worst {configs * race.max} trials ({configs} configurations "
                  f"x {race.max} seeds, the table above); at best {configs * race.min} ({configs} configurations "
                  f"x {race.min} seeds, if the first look settles the race)")


def _print_search(sweep_config) -> None:
    """The dry run of a sampled search: its space, and the configurations the sampler tries first."""
    from rich.console import Console
    from rich.table import Table

    from .search import TPE_STARTUP, SearchSpace, first_configurations

    search = sweep_config.search
    space = SearchSpace(sweep_config)
    configurations = first_configurations(sweep_config)
    console = Console(soft_wrap=True)
    console.print(f"{sweep_config.name}: {search.method} search, {search.trials} configurations x "
                  f"{len(sweep_config.seeds)} seed(s), sampler seed {search.seed}" +
                  (f"; pruning: {sweep_config.prune.method}" if sweep_config.prune else ""))
    for line in space.describe():
        console.print(f"  {line}")
    shown = "all of them" if search.method != "tpe" else \
        f"the first {len(configurations)}, drawn at random; the rest follow from their results"
    table = Table(title=f"Configurations ({shown})", title_justify="left")
    table.add_column("#")
    table.add_column("trial_id (seed {})".format(sweep_config.seeds[0]), overflow="fold")
    for column in space.varying:
        table.add_column(column)
    for number, runs in enumerate(configurations):
        table.add_row(str(number), runs[0].trial_id, *(str(runs[0].factors[f]) for f in space.varying))
    console.print(table)
    if search.method == "tpe" and search.trials > TPE_STARTUP:
        console.print(f"{search.trials - TPE_STARTUP} more configuration(s) chosen by TPE as results come in")


def _positive(ctx, param, value):
    """A finite number above 0, or the option's error (exit 2)."""
    import math

    if value is not None and not (math.isfinite(value) and value > 0):
        raise click.BadParameter(f"{value!r} is not a positive number; give the smallest difference that matters "
                                 "in the metric's units as compare prints them, e.g. 1.0 (one point of accuracy)")
    return value


@cli.command()
@click.argument("results", type=click.Path())
@click.option("--metric", default=None, show_default="val_accuracy",
              help=f"Metric for the findings, setting effects, scores per seed and metric-against-time figures: "
                   f"{', '.join(METRICS)}. Validation accuracy chooses by default; the test set confirms.")
@setting_option("Draw the per-setting figures for this setting only.", alias="--group-by")
@click.option("--format", "fmt", type=click.Choice(["png", "svg", "pdf"]), default="png", show_default=True,
              help="Image format of the files in plots/ (the report always embeds PNG or SVG).")
@click.option("--dpi", type=click.IntRange(30, 600), default=100, show_default=True,
              help="Resolution of raster images.")
@click.option("--model-diagrams", is_flag=True, help="Also draw model_<n>.png per distinct architecture "
                                                     "(needs graphviz and pydot).")
@reports_errors
def plot(results, metric, setting, fmt, dpi, model_diagrams):
    """Draw a sweep's figures into RESULTS/plots/ and write RESULTS/report.html.

    The report starts with the findings of `mnist-sweep compare` on METRIC.
    RESULTS is one sweep's directory or a folder of sweeps (each is plotted).
    Only the results files are read, so this works during a run and on
    results copied from another machine. What cannot be drawn (failed or
    unfinished trials, settings that do not vary) is skipped and said so.

    \b
    Examples:
        mnist-sweep plot results/
        mnist-sweep plot results/regularization --metric val_accuracy --format svg
    """
    import matplotlib

    matplotlib.use("Agg")
    from .report.plot import plot_results

    wrote = 0
    for outcome in plot_results(results, metric, setting, fmt, dpi, model_diagrams):
        _warn_damaged(outcome.damaged)
        for note in outcome.skipped:
            click.echo(f"Skipped ({outcome.sweep_dir.name}): {note}", err=True)
        if outcome.report:
            wrote += 1
            click.echo(f"{outcome.sweep_dir}: {len(outcome.figures)} figures in {outcome.sweep_dir / 'plots'}, "
                       f"report {outcome.report}")
    if not wrote:
        raise UserError(f"nothing to plot in {results}: no sweep there has trials yet")


@cli.command()
@click.argument("results", type=click.Path())
@click.option("--trials", is_flag=True, help="One row per trial (each seed) instead of per configuration.")
@click.option("--sort", default=None, show_default="val_accuracy", metavar="COLUMN",
              help="Column to sort by, best first: accuracies high to low; losses, times, epochs, parameters "
                   "and settings low to high. A metric sorts configurations by its mean. Default: validation "
                   "accuracy, as the best model is chosen (training accuracy without a validation set).")
@click.option("--top", type=click.IntRange(min=1), metavar="N", help="Show only the first N rows.")
@click.option("--where", multiple=True, metavar="KEY=VALUE",
              help="Keep trials whose KEY equals VALUE (repeatable: different keys must all match, "
                   "values of one key any), e.g. --where activation=relu --where status=ok.")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json", "markdown"]), default="table",
              show_default=True, help="table for people; csv, json or markdown for piping.")
@reports_errors
def show(results, trials, sort, top, where, fmt):
    """Print the summary of a sweep (or a folder of sweeps): one row per configuration.

    Each configuration's seeds are grouped: how many finished, and the mean
    and 95% confidence interval of test and validation accuracy, epochs and
    wall time. Trials that did not finish are left out of the means and
    counted; --trials lists every trial, failed, diverged and unfinished
    ones marked. Notes go to stderr so piped output stays clean.

    \b
    Examples:
        mnist-sweep show results/regularization --top 5
        mnist-sweep show results/regularization --trials --sort wall_seconds
        mnist-sweep show results/ --where optimizer="adam lr=0.01" --format csv > adam.csv
    """
    from .analysis.show import show_results

    shown = show_results(results, sort, top, where, fmt, trials)
    _warn_damaged(shown.damaged)
    for note in shown.notes:
        click.echo(f"Note: {note}", err=True)
    if isinstance(shown.body, str):
        click.echo(shown.body, nl=False)
    elif shown.body is not None:
        from rich.console import Console

        Console(width=None if sys.stdout.isatty() else 160).print(shown.body)  # files get the full table


@cli.command()
@click.argument("results", type=click.Path())
@click.option("--metric", default=None, show_default="val_accuracy",
              help=f"Metric that chooses and ranks: {', '.join(METRICS)}. Higher is better for accuracies; "
                   "lower for losses, times, epochs and parameters. The test set's figure is shown beside the "
                   "chosen configuration as the confirmation; choosing on it overstates the winner.")
@click.option("--smallest-difference", "smallest_difference", type=float, metavar="AMOUNT", callback=_positive,
              help="The smallest difference that matters, in the metric's units as printed (points for "
                   "accuracies, e.g. 1.0): closer is 'equivalent' (two one-sided tests). Default: the sweep's "
                   "smallest_difference, if set.")
@setting_option("Report on this setting only, e.g. optimizer.", alias="--factor")
@click.option("--format", "fmt", type=click.Choice(["table", "markdown", "json"]), default="table",
              show_default=True, help="table for people; markdown or json for piping.")
@reports_errors
def compare(results, metric, smallest_difference, setting, fmt):
    """Say which settings matter and which differences hold up across seeds.

    Ranks the settings of one sweep by the share of variance they explain,
    tests the best configuration by validation accuracy against every other
    (paired or Welch t, Holm-corrected), gives the test accuracy of what it
    chose as the confirmation, and writes the findings as sentences. With a
    smallest difference every verdict is better, worse, equivalent or
    unresolved. Trials that did not finish are excluded and counted; with
    one seed it ranks without intervals.

    \b
    Examples:
        mnist-sweep compare results/regularization
        mnist-sweep compare results/regularization --smallest-difference 1.0
        mnist-sweep compare results/regularization --metric val_loss --setting activation
    """
    from .analysis.compare import compare as compare_results, render
    from .results.damage import report

    damaged: list = []
    result = compare_results(results, metric, setting, damaged, smallest_difference=smallest_difference)
    _warn_damaged(report(damaged))
    click.echo(render(result, fmt), nl=False)


@cli.command()
@click.argument("results", type=click.Path())
@click.argument("input_path", metavar="INPUT", type=click.Path())
@click.option("--out", "-o", default="predictions.csv", show_default=True, type=click.Path(dir_okay=False),
              help="Where to write the CSV: ImageId (from 1), Label.")
@click.option("--probabilities", is_flag=True, help="Add columns p0..p9, each digit's probability.")
@reports_errors
def predict(results, input_path, out, probabilities):
    """Predict the digits in INPUT with a saved model; write a Kaggle submission.

    RESULTS is a sweep's results directory (its best model by validation
    accuracy, as best_model.json names it), one trial's directory
    RESULTS/runs/TRIAL, or a .keras file. INPUT is a Kaggle digit-recognizer
    test.csv (pixel0..pixel783), an IDX images file, or a .npz with x or x_test.

    \b
    Examples:
        mnist-sweep predict results/cnn_augmentation test.csv --out submission.csv
        mnist-sweep predict results/cnn_augmentation/runs/aug-on-s0-a371d238 t10k-images-idx3-ubyte --probabilities
    """
    from .training.predict import predict_file

    from .data.dataset import TITLES

    done = predict_file(results, input_path, out, probabilities)
    for message in done.warnings:
        _warn(message)
    trained = (f", trained on {TITLES.get(done.dataset, done.dataset)}" if done.dataset else
               ", its training dataset not recorded")
    click.echo(f"Wrote {done.rows:,} predictions to {done.out} (model: {done.model}{trained})")


@cli.command()
@click.argument("results", type=click.Path())
@click.argument("logdir", metavar="[DIR]", required=False, type=click.Path(file_okay=False))
@click.option("--to", "tool", type=click.Choice(["tensorboard", "mlflow"]), required=True,
              help="tensorboard: event files under DIR/<sweep>/; mlflow: one parent run per sweep, "
                   "one nested run per trial.")
@click.option("--tracking-uri", metavar="URI",
              help="MLflow tracking URI [default: sqlite:///<results root>/mlflow.db].")
@reports_errors
def export(results, logdir, tool, tracking_uri):
    """Write finished results to TensorBoard or MLflow.

    RESULTS is one sweep's directory or a folder of sweeps; only its files
    are read, so results copied from another machine work. Exporting again
    updates what changed and adds nothing twice.

    \b
    Examples:
        mnist-sweep export results/regularization --to tensorboard tb
        mnist-sweep export results/ --to mlflow
        mnist-sweep export results/ --to mlflow --tracking-uri http://127.0.0.1:5000
    """
    from . import tracking

    if tool == "tensorboard":
        if logdir is None:
            raise UserError("--to tensorboard needs a log directory: mnist-sweep export RESULTS --to tensorboard DIR",
                            EXIT_BAD_INPUT)
        if tracking_uri:
            raise UserError("--tracking-uri is for --to mlflow; --to tensorboard writes to DIR", EXIT_BAD_INPUT)
        for sweep, root in tracking.export_tensorboard(results, logdir):
            _warn_left_out(sweep.warnings)
            click.echo(f"{sweep.name}: {len(sweep.records)} trial(s) -> {root}")
        click.echo(f"View: tensorboard --logdir {logdir}")
        return
    if logdir is not None:
        raise UserError(f"--to mlflow takes no directory ({logdir!r}); to choose where runs go, "
                        "use --tracking-uri URI", EXIT_BAD_INPUT)
    uri, exported = tracking.export_mlflow(results, tracking_uri)
    for done in exported:
        _warn_left_out(done.warnings)
        click.echo(f"{done.name}: {done.created} new, {done.replaced} replaced, {done.unchanged} unchanged trial "
                   f"run(s) under parent run {done.parent_run_id} (experiment {done.experiment_id})")
        if done.removed:
            click.echo(f"{done.name}: deleted the run(s) of {len(done.removed)} trial(s) no longer in the results "
                       f"(renamed or removed): {', '.join(done.removed)}")
        for note in done.notes:
            click.echo(f"Note ({done.name}): {note}", err=True)
    if uri.startswith("sqlite:"):
        click.echo(f"View: mlflow ui --backend-store-uri {uri}")


def main():
    try:
        cli(prog_name="mnist-sweep")
    except SystemExit as exc:
        if exc.code == EXIT_INTERRUPTED:
            # Everything is recorded by now. A fit stopped by a second Ctrl-C can leave TensorFlow's
            # input-pipeline threads running, and tearing the interpreter down under them can crash
            # the process (a segfault seen once in the Ctrl-C test under load): leave without teardown.
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(EXIT_INTERRUPTED)
        raise


if __name__ == "__main__":
    main()
