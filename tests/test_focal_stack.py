"""Focal-stack input: sorting, the three sources of focus positions, and every bad input's message."""

import os

import numpy as np
import pytest
from PIL import Image

from dualfocus_jax.focal_stack import FocalStack, FocalStackError, load_focal_stack

REAL_STACKS = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "real_focal_stacks")


def _write_slices(folder, names, size=(12, 10), mode="RGB", seed=0):
    rng = np.random.default_rng(seed)
    arrays = []
    for name in names:
        channels = {"RGB": 3, "RGBA": 4, "L": 1}[mode]
        array = rng.integers(0, 256, size=(size[1], size[0], channels), dtype=np.uint8)
        Image.fromarray(array.squeeze(-1) if channels == 1 else array, mode).save(folder / name)
        arrays.append(array)
    return arrays


def test_from_arrays_sorts_slices_with_their_focus_positions():
    images = np.stack([np.full((4, 5, 3), v, np.float32) for v in (0.3, 0.1, 0.2)])
    stack = FocalStack.from_arrays(images, [3.0, 1.0, 2.0], unit="m")
    np.testing.assert_array_equal(stack.focus_positions, [1.0, 2.0, 3.0])
    np.testing.assert_allclose(stack.images[:, 0, 0, 0], [0.1, 0.2, 0.3])
    assert stack.images.dtype == np.float32 and stack.images.shape == (3, 4, 5, 3)


def test_from_arrays_converts_uint8_and_grey():
    images = np.stack([np.full((4, 5), 255, np.uint8), np.zeros((4, 5), np.uint8)])
    stack = FocalStack.from_arrays(images, [0.5, 1.0])
    assert stack.images.shape == (2, 4, 5, 3)
    assert stack.images.max() == 1.0 and stack.images.min() == 0.0


def test_folder_with_focus_file_in_natural_order(tmp_path):
    names = ["s_1.png", "s_2.png", "s_10.png"]
    arrays = _write_slices(tmp_path, names)
    # natural order is s_1, s_2, s_10; focus given in that order, deliberately not ascending
    (tmp_path / "focus_distances.txt").write_text("2.0\n0.5\n1.0\n")
    stack = load_focal_stack(tmp_path)
    np.testing.assert_array_equal(stack.focus_positions, [0.5, 1.0, 2.0])
    np.testing.assert_allclose(stack.images[0], arrays[1] / 255.0, atol=1e-6)  # s_2 at 0.5
    np.testing.assert_allclose(stack.images[2], arrays[0] / 255.0, atol=1e-6)  # s_1 at 2.0
    assert stack.source_files[1].endswith("s_10.png")


def test_focus_positions_from_file_names(tmp_path):
    _write_slices(tmp_path, ["image_2_0.90.jpg", "image_1_0.35.jpg", "image_3_1.33.jpg"])
    stack = load_focal_stack(tmp_path)
    np.testing.assert_allclose(stack.focus_positions, [0.35, 0.90, 1.33])


def test_explicit_focus_positions_override_file_and_names(tmp_path):
    _write_slices(tmp_path, ["a_0.1.png", "b_0.2.png"])
    (tmp_path / "focus_distances.txt").write_text("5\n6\n")
    stack = load_focal_stack(tmp_path, focus_positions=[9.0, 8.0])
    np.testing.assert_array_equal(stack.focus_positions, [8.0, 9.0])
    assert stack.source_files[0].endswith("b_0.2.png")


def test_focus_positions_from_a_given_text_file(tmp_path):
    _write_slices(tmp_path, ["00.png", "01.png"])
    focus_file = tmp_path / "focus.txt"
    focus_file.write_text("# far to near\n10.0\n2.5\n")
    stack = load_focal_stack(tmp_path, focus_positions=focus_file)
    np.testing.assert_array_equal(stack.focus_positions, [2.5, 10.0])


def test_max_size_downscales_keeping_aspect(tmp_path):
    _write_slices(tmp_path, ["a_0.5.jpg", "b_1.5.jpg"], size=(400, 300))
    stack = load_focal_stack(tmp_path, max_size=100)
    assert (stack.height, stack.width) == (75, 100)


@pytest.mark.parametrize(
    "focus, message",
    [
        ([1.0], "1 focus positions for 2 slices"),
        ([1.0, 1.0], "Duplicate focus positions"),
        ([1.0, float("nan")], "Non-finite focus positions"),
        ([1.0, float("inf")], "Non-finite focus positions"),
    ],
)
def test_bad_focus_positions_from_arrays(focus, message):
    with pytest.raises(FocalStackError, match=message):
        FocalStack.from_arrays(np.zeros((2, 4, 4, 3), np.float32), focus)


def test_fewer_than_two_slices():
    with pytest.raises(FocalStackError, match="at least 2 slices, got 1"):
        FocalStack.from_arrays(np.zeros((1, 4, 4, 3), np.float32), [1.0])


def test_nan_pixels_rejected():
    images = np.zeros((2, 4, 4, 3), np.float32)
    images[1, 2, 2, 0] = np.nan
    with pytest.raises(FocalStackError, match="NaN or infinite pixel"):
        FocalStack.from_arrays(images, [1.0, 2.0])


def test_empty_folder(tmp_path):
    with pytest.raises(FocalStackError, match="No images in"):
        load_focal_stack(tmp_path)


def test_missing_folder(tmp_path):
    with pytest.raises(FocalStackError, match="folder not found"):
        load_focal_stack(tmp_path / "nope")


def test_single_image_folder(tmp_path):
    _write_slices(tmp_path, ["only_0.5.png"])
    with pytest.raises(FocalStackError, match="Only one image"):
        load_focal_stack(tmp_path)


def test_count_mismatch_with_focus_file(tmp_path):
    _write_slices(tmp_path, ["a.png", "b.png", "c.png"])
    (tmp_path / "focus_distances.txt").write_text("1\n2\n")
    with pytest.raises(FocalStackError, match="2 focus positions from focus_distances.txt.*3 images"):
        load_focal_stack(tmp_path)


def test_non_numeric_focus_file(tmp_path):
    _write_slices(tmp_path, ["a.png", "b.png"])
    (tmp_path / "focus_distances.txt").write_text("1\nfar\n")
    with pytest.raises(FocalStackError, match="Line 2 .* is not a number"):
        load_focal_stack(tmp_path)


def test_integer_only_names_need_focus_positions(tmp_path):
    _write_slices(tmp_path, ["00.jpg", "01.jpg"])
    with pytest.raises(FocalStackError, match="No focus positions.*'00.jpg'.*--focus_distances.*--focus_order"):
        load_focal_stack(tmp_path)


def test_different_sizes(tmp_path):
    _write_slices(tmp_path, ["a_0.5.png"], size=(12, 10))
    _write_slices(tmp_path, ["b_1.5.png"], size=(14, 10))
    with pytest.raises(FocalStackError, match="different sizes.*a_0.5.png: 12x10.*b_1.5.png: 14x10"):
        load_focal_stack(tmp_path)


def test_different_channel_counts(tmp_path):
    _write_slices(tmp_path, ["a_0.5.png"], mode="RGB")
    _write_slices(tmp_path, ["b_1.5.png"], mode="RGBA")
    with pytest.raises(FocalStackError, match="different channel counts"):
        load_focal_stack(tmp_path)


def test_unreadable_file(tmp_path):
    _write_slices(tmp_path, ["a_0.5.png"])
    (tmp_path / "b_1.5.png").write_bytes(b"this is not a png")
    with pytest.raises(FocalStackError, match="Cannot read image .*b_1.5.png"):
        load_focal_stack(tmp_path)


def test_truncated_file(tmp_path):
    _write_slices(tmp_path, ["a_0.5.png", "b_1.5.png"], size=(64, 64))
    data = (tmp_path / "b_1.5.png").read_bytes()
    (tmp_path / "b_1.5.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(FocalStackError, match="b_1.5.png"):
        load_focal_stack(tmp_path)


def test_empty_file(tmp_path):
    _write_slices(tmp_path, ["a_0.5.png"])
    (tmp_path / "b_1.5.png").write_bytes(b"")
    with pytest.raises(FocalStackError, match="Empty image files"):
        load_focal_stack(tmp_path)


@pytest.mark.skipif(not os.path.isdir(REAL_STACKS), reason="shared real focal stacks not present")
@pytest.mark.parametrize("name, slices", [("pixel6_desk", 5), ("pixel6_b", 5)])
def test_real_phone_stacks_load_with_max_size(name, slices):
    stack = load_focal_stack(os.path.join(REAL_STACKS, name), max_size=256)
    assert stack.num_slices == slices
    assert max(stack.height, stack.width) == 256
    assert np.all(np.diff(stack.focus_positions) > 0)
    # 4080x3072 phone photos: the aspect ratio survives the downscale
    assert abs(stack.width / stack.height - 4080 / 3072) < 0.02 or abs(stack.height / stack.width - 4080 / 3072) < 0.02


@pytest.mark.skipif(not os.path.isdir(REAL_STACKS), reason="shared real focal stacks not present")
def test_real_mobile_depth_stack_needs_and_takes_a_focus_file():
    folder = os.path.join(REAL_STACKS, "mobile_depth_balls")
    with pytest.raises(FocalStackError, match="No focus position"):
        load_focal_stack(folder, max_size=128)
    stack = load_focal_stack(folder, os.path.join(folder, "focus_distances_as_published.txt"), max_size=128)
    assert stack.num_slices == 10 and stack.width == 128
    # published far-to-near; the stack is re-sorted ascending, so 00.jpg (the largest value) comes last
    assert stack.source_files[-1].endswith("00.jpg")
