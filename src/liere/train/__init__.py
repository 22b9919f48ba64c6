"""Training toolkit: config, Lightning module and data module, atomic checkpoints, runs and comparisons.

>>> from liere.train import TrainConfig, fit
>>> result = fit(TrainConfig(task="pointing", method="liere", epochs=2))
"""

from .config import ConfigError, TrainConfig, config_from, load_config, validate
from .run import evaluate, fit

__all__ = ["ConfigError", "TrainConfig", "config_from", "load_config", "validate", "fit", "evaluate"]
