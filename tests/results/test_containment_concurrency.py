"""Two commands at once on one sweep or one store (issue 22, class 6): neither crashes, neither deletes or
duplicates the other's work."""

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.fake_results import write_sweep

ROOT = Path(__file__).resolve().parent.parent
FACTORS = {"activation": ["relu", "tanh"]}


def test_two_plots_of_one_sweep_at_once_both_finish_with_every_figure(tmp_path, monkeypatch):
    """Both deleting the previous figures at the same moment: one used to die on a file the other had deleted."""
    import matplotlib

    matplotlib.use("Agg")
    from mnist_sweep.report.plot import plot_sweep

    sweep_dir = write_sweep(tmp_path / "results", factors=FACTORS, seeds=1, epochs=3)
    first = plot_sweep(sweep_dir)  # the figures a second pair of plots replaces
    expected = sorted(p.name for p in first.figures)
    unlink = Path.unlink

    def slow_unlink(self, *args, **kwargs):  # widen the window in which two deletions of plots/ overlap
        if self.parent.name == "plots":
            time.sleep(0.02)
        return unlink(self, *args, **kwargs)

    monkeypatch.setattr(Path, "unlink", slow_unlink)
    start, outcomes, errors = threading.Barrier(2), [], []

    def plot():
        start.wait()
        try:
            outcomes.append(plot_sweep(sweep_dir))
        except Exception as exc:  # noqa: BLE001 - the failure under test
            errors.append(f"{type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=plot) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert [sorted(p.name for p in outcome.figures) for outcome in outcomes] == [expected, expected]
    assert sorted(p.name for p in (sweep_dir / "plots").iterdir()) == expected
    assert (sweep_dir / "report.html").read_text().rstrip().endswith("</html>")


def _export(results: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "mnist_sweep.cli", "export", str(results), "--to", "mlflow"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})


@pytest.mark.slow
def test_two_mlflow_exports_at_once_give_one_run_per_trial_and_no_traceback(tmp_path):
    mlflow = pytest.importorskip("mlflow")
    from mlflow.entities import ViewType

    root = tmp_path / "results"
    write_sweep(root, name="fake", factors=FACTORS, seeds=2, epochs=3)
    write_sweep(root, name="other", factors=FACTORS, seeds=1, epochs=2)
    exports = [_export(root) for _ in range(2)]  # both start on a store that does not exist yet
    done = [process.communicate(timeout=300) for process in exports]
    for process, (out, err) in zip(exports, done):
        assert process.returncode == 0, err
        assert "Traceback" not in err and "Error" not in err
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{(root / 'mlflow.db').resolve()}")
    for name, trials in (("fake", 4), ("other", 2)):
        experiment = client.get_experiment_by_name(name)
        runs = client.search_runs([experiment.experiment_id], run_view_type=ViewType.ACTIVE_ONLY)
        parents = [r for r in runs if r.data.tags.get("mnist_sweep.role") == "sweep"]
        assert len(parents) == 1
        trial_ids = [r.data.tags["trial_id"] for r in runs if r.data.tags.get("mnist_sweep.role") == "trial"]
        assert len(trial_ids) == len(set(trial_ids)) == trials
        assert all(r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id for r in runs if r not in parents)
    # Whichever came second found the first's runs and reused them.
    outputs = "".join(out for out, _ in done)
    assert outputs.count("fake: 4 new") == 1 and outputs.count("fake: 0 new, 0 replaced, 4 unchanged") == 1
