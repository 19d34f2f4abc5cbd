"""experiments/motorcycle_error_breakdown.py: the sharp-slice count against the thin lens by hand, the table's
numbers against a hand computation, and the command end to end on a small rendering."""

import numpy as np
import pytest

from experiments import motorcycle_error_breakdown as breakdown


def test_sharp_slice_count_follows_the_thin_lens_by_hand():
    # NYUv2 camera: F = 50 mm, f/8 (A = 6.25 mm), 12 µm pixels. CoC = A·F/(s − F)·|d − s|/d. Focused at 2 m, a
    # surface at 2.05 m has CoC 6.25e-3·0.05/1.95·0.05/2.05 = 3.9e-6 m = 0.33 px (sharp); at 3 m, 2.7e-5 m = 2.2 px
    # (blurred: the renderer draws CoC ≤ 2 px sharp). Focused at 3 m, the 2.05 m surface has 2.5 px (blurred).
    depth = np.array([[2.05, 3.0]])
    focus = np.array([2.0, 3.0])
    np.testing.assert_array_equal(breakdown.sharp_slice_count(depth, focus), [[1, 1]])
    np.testing.assert_array_equal(breakdown.sharp_slice_count(np.array([[2.0, 2.05]]), np.array([2.0, 2.05])),
                                  [[2, 2]])


def test_rows_by_hand():
    depth = np.array([[1.0, 2.0], [4.0, 5.0]])
    pred = np.array([[1.5, 2.0], [4.0, 3.0]])  # errors 0.5, 0, 0, -2 (the last pixel not scored)
    scored = np.array([[True, True], [True, False]])
    rows = breakdown.breakdown_rows(pred, depth, scored, {"first row": np.array([[True, True], [False, False]])})
    (name, share, rmse, abs_rel, error_share), last = rows
    assert name == "first row" and share == pytest.approx(2 / 3)
    assert rmse == pytest.approx(np.sqrt(0.25 / 2)) and abs_rel == pytest.approx(0.25)
    assert error_share == pytest.approx(1.0)
    assert last[0] == "all" and last[2] == pytest.approx(np.sqrt(0.25 / 3)) and last[3] == pytest.approx(0.5 / 3)


def test_command_prints_a_table_per_method(capsys):
    assert breakdown.main(["--checkpoint", "classical", "--slices", "3", "--downscale", "8"]) == 0
    out = capsys.readouterr().out
    assert "### classical, 3 slices" in out and "| all | 1.00 |" in out and "depth edges" in out
