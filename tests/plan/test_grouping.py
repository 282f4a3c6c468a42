"""Which trials train together and how the plan reads: stacked models sized by both limits, branch
sub-models, trials alone, and the `run` options that set the limits. Planning only: no Keras."""

import pytest
import yaml
from click.testing import CliRunner

from mnist_sweep.cli import cli
from mnist_sweep.config import validate_config
from mnist_sweep.plan import expand
from mnist_sweep.plan.grouping import (describe_groups, describe_plan, format_size, make_tasks, parse_size,
                                       stack_bytes, substack_key)
from mnist_sweep.records import DEFAULT_MAX_BRANCHES, DEFAULT_STACK_MEMORY, Form, Sizing
from tests.helpers import tiny_config

CNN = {"hidden": [4], "activation": "relu", "type": "cnn", "conv": [[4, "pool"]]}
SIZING = Sizing(n_train=240)  # tiny_config's data: 300 images, a fifth of them for validation


def _trials(**sections):
    return expand(validate_config(tiny_config(**sections)))


def _tasks(trials, **limits):
    return make_tasks(trials, fuse=True, sizing=Sizing(n_train=240, **limits))


def _describe(tasks, **limits):
    return describe_groups(tasks, Sizing(n_train=240, **limits))


def test_seeds_optimizers_shapes_and_normalize_mixed_train_as_one_stacked_model():
    trials = _trials(model={"hidden": [[8], [16, 8]], "normalize": [False, True]}, seeds=3,
                     optimizer=[{"name": "adam", "learning_rate": 0.01}, {"name": "adam", "learning_rate": 0.1},
                                {"name": "sgd", "learning_rate": 0.1, "momentum": 0.9}, {"name": "rmsprop"}])
    tasks = _tasks(trials)
    assert [(task.form, len(task)) for task in tasks] == [(Form.STACKED, 48)]
    # sub-stacks: 2 shapes x normalize on/off x 3 optimizer families; the two Adam rates share one
    assert len({substack_key(t.settings) for t in tasks[0]}) == 12
    assert _describe(tasks) == ["48 trials in 1 compiled model: 48 branches in 12 stacks "
                                "(3 seeds, 3 optimizers, 2 shapes, normalize on and off)"]


def test_batch_size_or_epochs_apart_train_in_separate_models():
    trials = _trials(train={"batch_size": [32, 64], "epochs": [1, 2]}, seeds=2)
    tasks = _tasks(trials)
    assert len(tasks) == 4 and all(task.form is Form.STACKED and len(task) == 2 for task in tasks)
    pairs = [{(t.settings["batch_size"], t.settings["epochs"]) for t in task} for task in tasks]
    assert all(len(pair) == 1 for pair in pairs) and sorted(p for pair in pairs for p in pair) == \
        [(32, 1), (32, 2), (64, 1), (64, 2)]
    assert _describe(tasks) == ["8 trials in 4 compiled models: 8 branches in 4 stacks "
                                "(2 seeds, 1 optimizer, 1 shape; 2 batch sizes and 2 epoch counts, trained apart)"]


def test_convolutional_and_augmented_trials_keep_to_their_seed_and_exact_optimizer():
    cnn = _trials(model={**CNN, "activation": ["relu", "tanh"]}, seeds=2,
                  optimizer=[{"name": "adam", "learning_rate": 0.01}, {"name": "adam", "learning_rate": 0.1}])
    augmented = _trials(model={"hidden": [8], "activation": ["relu", "elu"]},
                        augment=[{"rotation": 5.0}])
    dense = _trials(model={"hidden": [8], "activation": ["relu", "elu"]}, seeds=2)
    tasks = _tasks(cnn + augmented + dense)
    branches = [task for task in tasks if task.form is Form.BRANCHES]
    # per seed and learning rate, the two CNNs; the two augmented MLPs join the CNNs of their seed and
    # optimizer (seed 0, Adam at 0.01), never the plain MLPs
    assert sorted(len(task) for task in branches) == [2, 2, 2, 4]
    for task in branches:
        assert len({(t.seed, t.settings["optimizer"]["learning_rate"]) for t in task}) == 1
    assert [len(task) for task in tasks if task.form is Form.STACKED] == [4]
    assert _describe(tasks) == [
        "4 trials in 1 compiled model: 4 branches in 1 stack (2 seeds, 1 optimizer, 1 shape)",
        "10 trials as branch sub-models of 4 compiled models (convolutional layers, data augmentation)"]


def test_trials_with_no_partner_train_alone_and_the_plan_says_why():
    lone_cnn = _trials(model=CNN, seeds=[7])
    lone_dense = _trials(train={"batch_size": 100, "epochs": 20})
    tasks = _tasks(lone_cnn + lone_dense)
    assert [task.form for task in tasks] == [Form.ISOLATED, Form.ISOLATED]
    assert _describe(tasks) == ["2 trials isolated (1: convolutional layers, and no other such trial with its seed, "
                                "batch size, epochs and optimizer; 1: no other trial with batch size 100 and 20 "
                                "epochs)"]
    assert _describe(_tasks(lone_dense)) == ["1 trial isolated (no other trial with batch size 100 and 20 epochs)"]
    assert _describe(_tasks(_trials(train={"epochs": 1}))) == \
        ["1 trial isolated (no other trial with batch size 64 and 1 epoch)"]


def test_max_branches_splits_one_sub_stack_into_even_models():
    trials = _trials(model={"activation": ["relu", "tanh", "elu", "selu", "gelu", "swish", "sigmoid", "linear",
                                           "leaky_relu"]}, seeds=2)[:17]
    tasks = _tasks(trials, max_branches=16)
    assert [len(task) for task in tasks] == [9, 8]  # not 16 + 1
    assert sorted(t.trial_id for task in tasks for t in task) == sorted(t.trial_id for t in trials)
    assert _describe(tasks, max_branches=16) == [
        "17 trials in 2 compiled models: 17 branches in 2 stacks (2 seeds, 1 optimizer, 1 shape) "
        "(split in 2: 16 --max-branches)"]


def test_a_split_keeps_sub_stacks_whole_where_that_costs_no_extra_model():
    trials = _trials(model={"hidden": [[8], [16], [24]], "activation": ["relu", "tanh", "elu", "selu", "gelu"]},
                     seeds=2)  # 3 sub-stacks of 10
    tasks = _tasks(trials, max_branches=20)
    assert sorted(len(task) for task in tasks) == [10, 20]
    owners = {}
    for number, task in enumerate(tasks):
        for trial in task:
            owners.setdefault(substack_key(trial.settings), set()).add(number)
    assert all(len(models) == 1 for models in owners.values())
    # 3 x 10 in 4 models of at most 8: whole sub-stacks would need 6, so they are cut, and evenly
    assert [len(task) for task in _tasks(trials, max_branches=8)] == [8, 8, 7, 7]


def test_stack_memory_splits_into_the_fewest_models_that_fit_and_evens_them():
    trials = _trials(seeds=12)  # branches of one size, each gathering its own batch
    limit = stack_bytes(trials[:5], SIZING.n_train, SIZING.input_dims)
    tasks = _tasks(trials, stack_memory=limit)
    assert [len(task) for task in tasks] == [4, 4, 4]  # 12 in threes of at most 5: 4 + 4 + 4, not 5 + 5 + 2
    assert all(stack_bytes(task.trials, 240, 784) <= limit for task in tasks)
    assert _describe(tasks, stack_memory=limit) == [
        f"12 trials in 3 compiled models: 12 branches in 3 stacks (12 seeds, 1 optimizer, 1 shape) "
        f"(split in 3: {format_size(limit)} --stack-memory)"]
    both = _tasks(trials, stack_memory=limit, max_branches=3)
    assert [len(task) for task in both] == [3, 3, 3, 3]
    assert _describe(both, stack_memory=limit, max_branches=3)[0].endswith(
        f"(split in 4: 3 --max-branches and {format_size(limit)} --stack-memory)")


def test_a_trial_too_big_for_the_memory_limit_trains_alone():
    trials = _trials(model={"hidden": [[8], [4096, 4096]], "activation": ["relu", "tanh"]})
    big = [t for t in trials if t.settings["hidden"] == [4096, 4096]]
    assert stack_bytes(big[:1], 240, 784) > 256 * 2**20  # float32 weights, gradients and Adam's two slots
    tasks = _tasks(trials, stack_memory=256 * 2**20)
    assert sorted((task.form, len(task)) for task in tasks) == \
        [(Form.ISOLATED, 1), (Form.ISOLATED, 1), (Form.STACKED, 2)]
    assert {t.trial_id for task in tasks if task.form is Form.ISOLATED for t in task} == {t.trial_id for t in big}
    assert _describe(tasks, stack_memory=256 * 2**20)[1] == \
        "2 trials isolated (each needs more than 256 MiB --stack-memory alone)"
    alone = _tasks(big[:1] + trials[:1], stack_memory=256 * 2**20)
    assert _describe(alone, stack_memory=256 * 2**20) == [
        "2 trials isolated (1: no other trial with batch size 64 and 2 epochs small enough to share a model; "
        "1: it needs more than 256 MiB --stack-memory alone)"]


def test_stack_bytes_follows_its_documented_formula():
    one = _trials()  # hidden [8], adam, batch size 64, one seed
    params = 784 * 8 + 8 + 8 * 10 + 10
    own = 4 * (params * (2 + 2) + 64 * 18 * 8 + 1024 * 18 * 2)
    inputs = 4 * 64 * 784 * 2 + 8 * 240
    assert stack_bytes(one, 240, 784) == own + inputs + 4 * 1024 * 784
    two_seeds = _trials(seeds=2)
    same_seed = _trials(model={"activation": ["relu", "tanh"]})
    assert stack_bytes(same_seed, 240, 784) == 2 * own + inputs + 4 * 1024 * 784  # one shared input batch
    assert stack_bytes(two_seeds, 240, 784) == 2 * own + 2 * inputs + 4 * 1024 * 784  # each gathers its own
    # the defaults hold 64 branches of a typical MLP on full MNIST: max_branches is what binds there
    typical = _trials(model={"hidden": [256, 128]}, seeds=list(range(64)), train={"batch_size": 128})
    assert stack_bytes(typical, 54_000, 784) < DEFAULT_STACK_MEMORY
    assert len(make_tasks(typical, fuse=True, sizing=Sizing(n_train=54_000))) == 1 and DEFAULT_MAX_BRANCHES == 64


def test_trials_a_split_leaves_alone_are_told_so():
    trials = _trials(model={"activation": ["relu", "tanh"]})
    tasks = _tasks(trials, max_branches=1)
    assert [task.form for task in tasks] == [Form.ISOLATED] * 2
    assert _describe(tasks, max_branches=1) == ["2 trials isolated (alone after the split at 1 --max-branches)"]


def test_no_fuse_keeps_its_line():
    trials = _trials(model={"activation": ["relu", "tanh"]})
    assert describe_plan(make_tasks(trials, fuse=False), fuse=False) == \
        ["isolated: 2 trial(s), each its own model (execution: isolated)"]
    assert describe_plan([], fuse=True) == []


@pytest.mark.parametrize("text, size", [("2GiB", 2 * 2**30), ("512MiB", 512 * 2**20), ("1.5G", 3 * 2**29),
                                        ("1000000", 1_000_000), ("2GB", 2_000_000_000), ("64 kib", 65536)])
def test_sizes_read_as_people_write_them(text, size):
    assert parse_size(text) == size


def test_sizes_print_as_people_write_them():
    assert [format_size(n) for n in (2 * 2**30, 3 * 2**29, 512 * 2**20, 100)] == \
        ["2 GiB", "1.5 GiB", "512 MiB", "100 bytes"]


def _write_config(tmp_path, **sections):
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(tiny_config(**sections)))
    return path


@pytest.mark.parametrize("given, problem", [("2gigs", "'2gigs' is not a size"), ("GiB", "'GiB' is not a size"),
                                            ("0", "'0' is less than one byte"), ("-1G", "'-1G' is not a size")])
def test_stack_memory_option_refuses_what_is_not_a_size(tmp_path, given, problem):
    config = _write_config(tmp_path)
    result = CliRunner().invoke(cli, ["run", str(config), "--dry-run", "--stack-memory", given])
    assert result.exit_code == 2
    assert f"Invalid value for '--stack-memory': {problem}" in result.output
    assert "e.g. 2GiB" in result.output or "such as 2GiB" in result.output


def test_dry_run_prints_the_plan(tmp_path):
    config = _write_config(tmp_path, model={"hidden": [[8], [16]], "activation": ["relu", "tanh"]}, seeds=2,
                           optimizer=[{"name": "adam"}, {"name": "sgd", "learning_rate": 0.1}])
    out = tmp_path / "r"

    def dry(*options):
        result = CliRunner().invoke(cli, ["run", str(config), "--out", str(out), "--dry-run", *options])
        assert result.exit_code == 0, result.output
        return result.output.splitlines()[-1]

    assert dry() == "16 trials in 1 compiled model: 16 branches in 4 stacks (2 seeds, 2 optimizers, 2 shapes)"
    assert dry("--max-branches", "8").endswith("(split in 2: 8 --max-branches)")
    trials = expand(validate_config(yaml.safe_load(config.read_text())))
    small = max(stack_bytes(trials[k:k + 4], 240, 784) for k in range(0, 16, 4))
    split = make_tasks(trials, fuse=True, sizing=Sizing(stack_memory=small, n_train=240))
    assert 4 <= len(split) < 16 and all(task.form is Form.STACKED for task in split)
    assert dry("--stack-memory", str(small)).endswith(f"(split in {len(split)}: {format_size(small)} --stack-memory)")
    assert dry("--no-fuse") == "isolated: 16 trial(s), each its own model (execution: isolated)"
    assert not out.exists()


def test_run_help_names_both_limits():
    result = CliRunner().invoke(cli, ["run", "--help"])
    assert "--stack-memory 512MiB" in result.output and "both limits apply" in result.output
    assert "[default: 2GiB]" in result.output and parse_size("2GiB") == DEFAULT_STACK_MEMORY
