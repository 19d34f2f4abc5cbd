"""experiments/engine_samples.py: the README picture of engine draws is reproducible and small."""

import numpy as np

from experiments import engine_samples


def test_picture_is_written_small_and_draws_are_seeded(tmp_path):
    draws = engine_samples.sample_stacks(11, size=(48, 48))
    again = engine_samples.sample_stacks(11, size=(48, 48))
    assert [len(d["focus_positions"]) for d in draws] == [slices for _, _, slices in engine_samples.ROWS]
    for first, second in zip(draws, again):
        np.testing.assert_array_equal(first["stack"], second["stack"])
    text = engine_samples.caption(draws[0]["meta"], draws[0]["focus_positions"], draws[0]["depth"])
    assert draws[0]["meta"]["camera"] in text and "slices" in text
    path = tmp_path / "samples.png"
    engine_samples.save_picture(draws, str(path))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size < 400_000
