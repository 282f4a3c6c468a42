"""A missing optional package is reported one way, whichever option needs it (errors.require: the TensorBoard,
MLflow and Optuna cases are in their own tests); `python -m mnist_sweep` works."""

import subprocess
import sys

import pytest
import yaml
from click.testing import CliRunner

from mnist_sweep.cli import cli
from tests.helpers import tiny_config


@pytest.mark.parametrize("package, args, message", [
    ("ray", ["--executor", "ray"], "--executor ray needs Ray, which is not installed: pip install 'mnist-sweep[ray]'"),
])
def test_a_missing_extra_is_one_error_line_with_the_install_command_and_exit_2(tmp_path, monkeypatch, package, args,
                                                                                message):
    monkeypatch.setitem(sys.modules, package, None)  # importing it now raises ImportError
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(tiny_config()))
    out = tmp_path / "r"
    result = CliRunner().invoke(cli, ["run", str(config), "--out", str(out), *args])
    assert result.exit_code == 2, result.output
    assert result.output.splitlines()[-1] == f"Error: {message}"
    assert not out.exists()


def test_python_dash_m_runs_the_command_line():
    done = subprocess.run([sys.executable, "-m", "mnist_sweep", "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("Usage: mnist-sweep [OPTIONS] COMMAND")
