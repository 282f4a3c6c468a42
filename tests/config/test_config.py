"""The config schema: how YAML values are read, and that every mistake is reported helpfully."""

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mnist_sweep.config import (
    SweepConfig,
    apply_overrides,
    config_to_dict,
    load_config,
    parse_overrides,
    read_yaml,
    validate_config,
)
from mnist_sweep.errors import ConfigError
from mnist_sweep.plan.grid import expand

ROOT = Path(__file__).resolve().parents[2]
BAD = Path(__file__).resolve().parents[1] / "data" / "bad_configs"
EXPECTED = yaml.safe_load((BAD / "expected.yaml").read_text())
CONFIGS = sorted((ROOT / "configs").glob("*.yaml")) + sorted((ROOT / "benchmarks" / "configs").glob("*.yaml"))


def config(text: str) -> SweepConfig:
    """A validated config from YAML text."""
    return validate_config(yaml.safe_load(text))


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        config(text)
    return info.value.problems


# --- bad configs: each file in tests/data/bad_configs/ with the message it must produce ---------------

def test_every_bad_config_has_expected_messages():
    files = {p.name for p in BAD.glob("*.yaml")} - {"expected.yaml"}
    assert files == set(EXPECTED), "add each bad config to expected.yaml (and remove stale entries)"
    assert len(files) >= 20


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_bad_config_is_reported(name):
    path = BAD / name
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert str(path) in message  # the user learns which file is wrong
    for fragment in EXPECTED[name]:
        assert fragment in message, f"{fragment!r} missing from:\n{message}"
    # Each file has exactly one mistake, so the message must not add noise about anything else.
    assert len(info.value.problems) == 1, message


def test_several_problems_are_all_listed():
    found = problems("""
        name: runs/mnist
        modle: {hidden: 30}
        model: {activation: rellu, dropout: 1.5}
        optimizer: {name: sgd, beta_1: 0.9}
        train: {epochs: 0}
        seeds: [1, 1]
        include: [{activaton: tanh}]
    """)
    wanted = ["name:", "modle:", "model.activation:", "model.dropout:", "optimizer.beta_1:",
              "train.epochs:", "seeds:", "include[0].activaton:"]
    assert len(found) == len(wanted), found
    for start in wanted:
        assert any(p.startswith(start) for p in found), f"no problem for {start}: {found}"


def test_optimizer_reports_every_bad_setting():
    found = problems("name: x\noptimizer: {name: adam, momentum: 0.9, rho: 0.9, beta_1: 2}")
    assert [p.split(":")[0] for p in found] == ["optimizer.momentum", "optimizer.rho", "optimizer.beta_1"]


def test_key_that_starts_like_a_type_name_keeps_its_path():
    # pydantic tags union branches 'int', 'list[...]'...; a user key is never mistaken for one.
    [problem] = problems("name: x\nmodel: {intializer: he_normal}")
    assert problem.startswith('model.intializer: unknown key (did you mean "initializer"?)')


def test_top_level_scalar_is_rejected():
    with pytest.raises(ConfigError, match="must be a mapping.*got str"):
        validate_config("name: x")


# --- how values are read ------------------------------------------------------------------------------

def test_scalars_become_one_element_axes():
    c = config("name: x\nmodel: {activation: tanh, dropout: 0.5}\ntrain: {epochs: 3, early_stopping: false}")
    assert c.model.activation == ["tanh"]
    assert c.model.dropout == [0.5]
    assert c.train.epochs == [3]
    assert c.train.early_stopping == [False]


def test_lists_stay_axes():
    c = config("name: x\nmodel: {activation: [relu, tanh], dropout: [0, 0.5]}\ntrain: {batch_size: [32, 128]}")
    assert c.model.activation == ["relu", "tanh"]
    assert c.model.dropout == [0.0, 0.5]
    assert c.train.batch_size == [32, 128]


@pytest.mark.parametrize("hidden, axis", [
    ("30", [[30]]),                             # one layer
    ("[512, 512]", [[512, 512]]),               # one architecture of two layers
    ("[[30], [512, 512]]", [[30], [512, 512]]),  # an axis of two architectures
    ("[[30]]", [[30]]),
])
def test_hidden_forms(hidden, axis):
    assert config(f"name: x\nmodel: {{hidden: {hidden}}}").model.hidden == axis


@pytest.mark.parametrize("text, expected", [
    ("sgd", [{"name": "sgd", "learning_rate": 0.001}]),
    ("{name: sgd, learning_rate: 0.1, momentum: 0.9}", [{"name": "sgd", "learning_rate": 0.1, "momentum": 0.9}]),
    ("[sgd, {name: adam, learning_rate: 0.01}]",
     [{"name": "sgd", "learning_rate": 0.001}, {"name": "adam", "learning_rate": 0.01}]),
])
def test_optimizer_as_name_mapping_or_list(text, expected):
    assert config_to_dict(config(f"name: x\noptimizer: {text}"))["optimizer"] == expected


def test_numbers_written_as_yaml_strings_are_read_as_numbers():
    # YAML 1.1 reads 1e-3 (no dot) as a string; users mean the number.
    c = config("name: x\noptimizer: {name: adam, learning_rate: 1e-3, beta_1: 9e-1}")
    assert config_to_dict(c)["optimizer"] == [{"name": "adam", "learning_rate": 0.001, "beta_1": 0.9}]


@pytest.mark.parametrize("seeds, expected", [("3", [0, 1, 2]), ("1", [0]), ("[5, 7]", [5, 7]), ("[0]", [0])])
def test_seeds_as_count_or_list(seeds, expected):
    assert config(f"name: x\nseeds: {seeds}").seeds == expected


def test_defaults():
    c = config("name: x")
    assert c.dataset.name == "mnist" and c.dataset.validation_split == 0.1
    assert c.model.hidden == [[128]] and c.model.activation == ["relu"] and c.model.dropout == [0.0]
    assert config_to_dict(c)["optimizer"] == [{"name": "adam", "learning_rate": 0.001}]
    assert c.train.epochs == [10] and c.train.batch_size == [128]
    assert c.train.early_stopping[0].monitor == "val_loss" and c.train.early_stopping[0].patience == 3
    assert c.seeds == [0] and c.include == [] and c.exclude == []
    assert len(expand(c)) == 1


def test_config_to_dict_round_trips():
    # sweep.yaml stores config_to_dict(); reading it back must give the same sweep.
    c = config("name: x\nmodel: {hidden: [[30], [64, 64]], initializer: {name: random_normal, stddev: 0.1}}\n"
               "optimizer: [sgd, {name: adam, beta_1: 0.8}]\nexclude: [{optimizer: sgd, hidden: 30}]\nseeds: 2")
    again = validate_config(yaml.safe_load(yaml.safe_dump(config_to_dict(c))))
    assert again == c
    assert [t.trial_id for t in expand(again)] == [t.trial_id for t in expand(c)]


# --- --set overrides ----------------------------------------------------------------------------------

RAW = {"name": "x", "model": {"activation": "relu"}, "optimizer": "sgd"}


def test_overrides_change_values_and_build_axes():
    c = validate_config(apply_overrides(RAW, ["train.epochs=2", "model.dropout=[0, 0.5]", "seeds=3"]))
    assert c.train.epochs == [2]
    assert c.model.dropout == [0.0, 0.5]
    assert len(expand(c)) == 6


def test_overrides_leave_the_input_untouched():
    apply_overrides(RAW, ["model.activation=tanh"])
    assert RAW["model"] == {"activation": "relu"}


def test_override_into_missing_nested_section():
    raw = apply_overrides(RAW, ["train.early_stopping.patience=5", "dataset.n_train=100"])
    c = validate_config(raw)
    assert c.train.early_stopping[0].patience == 5
    assert c.dataset.n_train == 100


def test_override_optimizer_setting_keeps_its_name():
    # `optimizer: sgd` is short for {name: sgd}: setting its momentum must not lose the name.
    raw = apply_overrides(RAW, ["optimizer.momentum=0.9", "optimizer.learning_rate=0.1"])
    assert config_to_dict(validate_config(raw))["optimizer"] == [
        {"name": "sgd", "learning_rate": 0.1, "momentum": 0.9}]


def test_override_unknown_key_suggests_the_right_one():
    with pytest.raises(ConfigError) as info:
        apply_overrides(RAW, ["train.epoch=2"])
    [problem] = info.value.problems
    assert "unknown key 'train.epoch'" in problem and 'did you mean "epochs"?' in problem


def test_override_bad_yaml_value():
    with pytest.raises(ConfigError, match=r"model.dropout=\[0, 0.5'.*not valid YAML"):
        apply_overrides(RAW, ["model.dropout=[0, 0.5"])


def test_override_without_equals():
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        parse_overrides(["train.epochs"])


def test_every_bad_override_is_listed():
    with pytest.raises(ConfigError) as info:
        apply_overrides(RAW, ["modle.dropout=0.5", "model.dropout=[", "train.epochs", "model.activation.x=1"])
    assert len(info.value.problems) == 4, info.value.problems


def test_override_values_are_validated_with_the_key_path(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("name: x\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, ["model.dropout=[0, 2]"])
    assert info.value.problems == ["model.dropout[1]: should be less than 1 (got 2)"]


def test_values_parse_as_yaml():
    assert parse_overrides(["model.dropout=[0, 0.5]", "train.early_stopping=false", "name=abc"]) == [
        (["model", "dropout"], [0, 0.5]), (["train", "early_stopping"], False), (["name"], "abc")]


# --- reading files ------------------------------------------------------------------------------------

def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match=f"config file not found: {tmp_path / 'nope.yaml'}"):
        read_yaml(tmp_path / "nope.yaml")


def test_directory_instead_of_file(tmp_path):
    with pytest.raises(ConfigError, match="cannot read config"):
        read_yaml(tmp_path)


# --- the configs we ship ------------------------------------------------------------------------------

def test_configs_are_found():
    assert CONFIGS, "no configs/*.yaml found"


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_config_validates_and_expands(path):
    trials = expand(load_config(path))
    assert trials
    assert len({t.trial_id for t in trials}) == len(trials)


# --- validation stays light ---------------------------------------------------------------------------

def test_config_and_grid_do_not_import_heavy_libraries():
    # `mnist-sweep --help` and config validation must not pay for loading TensorFlow.
    heavy = ("tensorflow", "keras", "pandas", "matplotlib")
    code = f"import mnist_sweep.config, mnist_sweep.plan.grid, sys; print([m for m in {heavy!r} if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"


def test_every_setting_is_declared_once_and_the_schema_agrees():
    # A setting is one line in config/settings.py; its section, slug and range bounds come from it, and the
    # schema's fields (in the same order) and numeric bounds are the declaration's, not a second copy.
    from pydantic import ValidationError

    from mnist_sweep.config import RANGE_SETTINGS, SECTIONS, SETTINGS, ModelConfig, SweepConfig, TrainConfig

    axes = [*ModelConfig.model_fields, "optimizer", "augment",
            *(k for k in TrainConfig.model_fields if k not in ("timeout_seconds", "save_model"))]
    assert [s.name for s in SETTINGS] == list(SECTIONS) == axes
    assert all(s.section is None or s.name in SweepConfig.model_fields[s.section].annotation.model_fields
               for s in SETTINGS)
    for kind, bounds in RANGE_SETTINGS.items():
        section, key = kind.split(".")
        if section != "model" or key == "hidden":
            continue
        outside = bounds.low if not bounds.low_ok else bounds.high  # a value just outside the declared bounds
        with pytest.raises(ValidationError):
            ModelConfig.model_validate({key: outside})
        inside = bounds.low if bounds.low_ok else (bounds.low + min(bounds.high, 1.0)) / 2
        ModelConfig.model_validate({key: inside})
