"""The sweep config: its settings, schema, how validation errors are described, include/exclude selectors,
and loading.

Layered one way: `settings` declares every trial setting once (section, slug, bounds, rangeability);
`schema` (the pydantic models) builds on it and knows nothing of the others; `describe` turns
validation errors into plain lines; `selectors` checks include/exclude entries against the schema;
`loading` reads YAML, applies `--set` overrides, validates and dumps. `plan/` builds on this
package, never the reverse. Callers import from here: `from mnist_sweep.config import load_config`.
"""

from .describe import describe_errors, model_in, show
from .loading import (apply_overrides, config_to_dict, load_config, load_yaml, parse_overrides, read_yaml,
                      uses_batch_norm, validate_config)
from .schema import (ACTIVATIONS, BN_MOMENTUM, IMAGE_SIZE, INITIALIZERS, MAX_SEED, MAX_TRIALS,
                     NAME_PATTERN, OPTIMIZER_KEYS, OPTIMIZERS, RACE_METRICS, RACE_MODES,
                     Activation, Augment, ConvStack, DatasetConfig, EarlyStopping, Float, Hidden,
                     Initializer, InitializerSpec, Int, ModelConfig, OptimizerConfig, Penalty, PositiveInt, Rate,
                     SeedRace, Strict, SweepConfig, TrainConfig, as_list, is_architecture, is_float)
from .ranges import METHODS, PRUNERS, SAMPLED_METHODS, PruneConfig, Range, SearchConfig
from .selectors import check_selectors, pin_settings, unknown_settings
from .settings import ARCHITECTURE, CNN_ONLY, RANGE_SETTINGS, SECTIONS, SETTINGS, SLUG_PREFIX, Bounds, Setting

__all__ = [
    # schema
    "ACTIVATIONS", "BN_MOMENTUM", "CNN_ONLY", "IMAGE_SIZE", "INITIALIZERS", "MAX_SEED", "MAX_TRIALS", "NAME_PATTERN",
    "OPTIMIZER_KEYS", "OPTIMIZERS", "RACE_METRICS", "RACE_MODES",
    "Activation", "Augment", "ConvStack", "DatasetConfig", "EarlyStopping", "Float", "Hidden",
    "Initializer", "InitializerSpec", "Int", "ModelConfig", "OptimizerConfig", "Penalty", "PositiveInt", "Rate",
    "SeedRace", "Strict", "SweepConfig", "TrainConfig", "as_list", "is_architecture", "is_float",
    # error descriptions
    "describe_errors", "model_in", "show",
    # every trial setting, declared once
    "ARCHITECTURE", "RANGE_SETTINGS", "SETTINGS", "SLUG_PREFIX", "Bounds", "Setting",
    # include/exclude selectors
    "SECTIONS", "check_selectors", "pin_settings", "unknown_settings",
    # ranges, search and pruning
    "METHODS", "PRUNERS", "SAMPLED_METHODS", "PruneConfig", "Range", "SearchConfig",
    # loading
    "apply_overrides", "config_to_dict", "load_config", "load_yaml", "parse_overrides", "read_yaml", "uses_batch_norm",
    "validate_config",
]
