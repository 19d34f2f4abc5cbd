"""experiments/choose_cost_upsampling.py: its settings flag and that its engine stacks are not the test split's."""

import numpy as np
import pytest

from datasets.focal_engine.focal_engine_dataset_builder import engine_test_stack
from experiments.choose_cost_upsampling import DATASETS, engine_validation_scenes, parse_setting


def test_settings_parse_and_bad_ones_are_named():
    assert parse_setting("4:0.05") == (4, 0.05)
    for bad in ("4", "0:0.1", "2:-1", "a:b"):
        with pytest.raises(ValueError, match="REACH:SIGMA"):
            parse_setting(bad)


def test_validation_draws_are_not_the_test_split():
    engine, protocol = [next(scenes) for scenes in [engine_validation_scenes(1)] * 2]
    assert (engine.dataset, protocol.dataset) == DATASETS[:2]
    np.testing.assert_array_equal(engine.depth, protocol.depth)
    assert not np.array_equal(engine.stack, protocol.stack)  # re-rendered, not copied
    _, test_example = engine_test_stack(3, 0)
    assert len(engine.focus) == 3
    assert not np.allclose(engine.depth, test_example["depth"])
