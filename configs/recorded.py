"""The config a training run recorded in its workdir (`<workdir>/config.json`, written when training starts).

    python -m experiments.train --workdir runs/nyuv2 --mode=eval        # reads runs/nyuv2/config.json
    python -m experiments.train --config configs/recorded.py:runs/nyuv2 --workdir runs/nyuv2 --mode=eval \
        --config.evals.test.max_examples=20                            # the same, with overrides

The JSON holds the resolved config; `recorded_config` turns it back into the ConfigDict the run was started
with: lists become tuples again (JSON has no tuples) and `model` gets its typed placeholders back (fields the
run left unset stay unset, and every field is overridable from the command line).
"""

from __future__ import annotations

import json
import os

import ml_collections

from configs.common import model_block

# The name the trainer writes (dualfocus_jax.training.trainer.RUN_CONFIG); kept here so reading a record
# imports no training code.
RUN_CONFIG = "config.json"


def _from_json(value):
    if isinstance(value, dict):
        return ml_collections.ConfigDict({key: _from_json(item) for key, item in value.items()})
    if isinstance(value, list):
        return tuple(_from_json(item) for item in value)
    return value


def recorded_config(workdir: str) -> ml_collections.ConfigDict:
    """The experiment config recorded in `workdir`; ValueError (one line) when there is none or it is damaged."""
    path = os.path.join(os.path.abspath(workdir), RUN_CONFIG)
    if not os.path.isfile(path):
        raise ValueError(f"{path} does not exist: {workdir} holds no recorded config (it is not a training workdir, "
                         "or it predates config.json); pass the run's --config.")
    try:
        with open(path, encoding="utf-8") as handle:
            record = json.load(handle)
    except (OSError, ValueError) as error:
        raise ValueError(f"cannot read {path} ({type(error).__name__}: {error}); pass the run's --config.") from None
    if not isinstance(record, dict) or not isinstance(record.get("model"), dict):
        raise ValueError(f"{path} is not a recorded experiment config (no model block); pass the run's --config.")
    try:
        model = model_block(**{key: _from_json(value) for key, value in record["model"].items()})
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from None
    config = ml_collections.ConfigDict()
    for key, value in record.items():  # in the recorded order
        config[key] = model if key == "model" else _from_json(value)
    return config


def get_config(arg=None):
    """`configs/recorded.py:<workdir>`: the config recorded in that workdir."""
    if not arg:
        raise ValueError("configs/recorded.py needs the workdir as its argument: --config=configs/recorded.py:WORKDIR")
    return recorded_config(arg)
