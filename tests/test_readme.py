"""The README's Python API example runs as written, against a results directory in the real layout."""

import re
from pathlib import Path

import pytest
import yaml
from matplotlib.figure import Figure

from tests.fake_results import write_sweep
from tests.helpers import tiny_config

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.keras
def test_readme_python_example_runs_as_written(tmp_path, monkeypatch):
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(encoding="utf-8"), re.S)
    example = next(b for b in blocks if "compare.findings" in b)
    write_sweep(tmp_path / "results", "regularization", factors={"activation": ["relu", "tanh"]})
    # The example's last line runs configs/smoke.yaml: a two-trial stand-in keeps this test short.
    (tmp_path / "configs").mkdir()
    smoke = tiny_config("smoke", model={"activation": ["relu", "tanh"]}, train={"epochs": 1})
    (tmp_path / "configs" / "smoke.yaml").write_text(yaml.safe_dump(smoke))
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(example, "README.md", "exec"), scope)  # the documented example itself
    assert isinstance(scope["fig"], Figure)
    assert len(scope["configs"]) == 2
    assert list(scope["summary"]["status"]) == ["ok", "ok"]
