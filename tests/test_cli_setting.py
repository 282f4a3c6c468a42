"""One name for one concept on the command line: a trial setting is `--setting` on every command that
takes one; the old names (`compare --factor`, `plot --group-by`) still work, hidden from --help."""

import shutil

import pytest
from click.testing import CliRunner

from mnist_sweep.cli import cli
from tests.fake_results import write_sweep

ALIASES = {"compare": "--factor", "plot": "--group-by"}  # each command's name for --setting before issue 23
FACTORS = {"activation": ["relu", "tanh"], "dropout": [0.0, 0.2]}


def invoke(*args):
    return CliRunner().invoke(cli, [*map(str, args)])


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    return write_sweep(tmp_path_factory.mktemp("results"), "two", factors=FACTORS, seeds=2)


def test_every_option_naming_a_setting_is_shown_as_setting_only():
    for name, command in cli.commands.items():
        shown = [p for p in command.params if getattr(p, "metavar", None) == "SETTING" and not p.hidden]
        assert all(p.opts == ["--setting"] for p in shown), f"{name}: {[p.opts for p in shown]}"
        assert bool(shown) == (name in ALIASES), name


@pytest.mark.parametrize("name", sorted(ALIASES))
def test_help_shows_setting_and_not_the_old_names(name):
    result = invoke(name, "--help")
    assert result.exit_code == 0
    assert "--setting SETTING" in result.output
    assert "--factor" not in result.output and "--group-by" not in result.output


def test_no_help_names_the_old_names():
    for name in cli.commands:
        output = invoke(name, "--help").output
        assert "--factor" not in output and "--group-by" not in output, name


@pytest.mark.parametrize("fmt", ["json", "table"])
def test_compare_factor_gives_what_setting_gives(sweep, fmt):
    new = invoke("compare", sweep, "--format", fmt, "--setting", "dropout")
    old = invoke("compare", sweep, "--format", fmt, "--factor", "dropout")
    assert new.exit_code == old.exit_code == 0, new.output
    assert new.output == old.output
    assert new.output != invoke("compare", sweep, "--format", fmt).output  # the option took effect


def test_plot_group_by_gives_what_setting_gives(sweep, tmp_path):
    outputs, figures = [], []
    for option in ("--setting", "--group-by"):
        copy = shutil.copytree(sweep, tmp_path / option.strip("-") / "two")
        result = invoke("plot", copy, option, "dropout", "--format", "svg", "--dpi", 50)
        assert result.exit_code == 0, result.output
        outputs.append(result.output.replace(str(copy), "SWEEP"))
        figures.append(sorted(p.name for p in (copy / "plots").iterdir()))
    assert outputs[0] == outputs[1]
    assert figures[0] == figures[1] and "curves_dropout.svg" in figures[0]
    assert "curves_activation.svg" not in figures[0]


@pytest.mark.parametrize("option", ["--setting", "--factor"])
def test_compare_rejects_a_bad_setting_naming_the_option_as_typed(sweep, option):
    result = invoke("compare", sweep, option, "activaton")
    assert result.exit_code == 2
    assert result.stderr == (f'Error: {option}: "activaton" is not a setting of this sweep (did you mean '
                             '"activation"?); settings that vary: activation, dropout\n')


@pytest.mark.parametrize("option", ["--setting", "--group-by"])
def test_plot_rejects_a_bad_setting_naming_the_option_as_typed(sweep, tmp_path, option):
    unknown = invoke("plot", sweep, option, "dropuot")
    assert unknown.exit_code == 2
    assert unknown.stderr.startswith(f'Error: {option}: unknown setting "dropuot" (did you mean "dropout"?); '
                                     "settings: ")
    single = write_sweep(tmp_path, "single", factors={"dropout": [0.0]}, seeds=1)
    constant = invoke("plot", single, option, "dropout")
    assert constant.exit_code == 2
    assert constant.stderr == (f'Error: {option}: "dropout" does not vary among the finished trials of single; '
                               "varying settings: none\n")


@pytest.mark.parametrize("name", sorted(ALIASES))
def test_setting_and_its_old_name_together_are_refused(sweep, name):
    result = invoke(name, sweep, "--setting", "dropout", ALIASES[name], "activation")
    assert result.exit_code == 2
    assert result.stderr == f"Error: --setting and {ALIASES[name]} are the same option; give it once\n"
