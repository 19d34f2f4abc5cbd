"""hci_lightfield: shift-and-add refocusing against a SciPy reference, recovery of the view-ordering
signs, and a fake benchmark folder (PNG views + PFM) prepared to array_record and read back."""

import os

import numpy as np
import pytest
from scipy import ndimage

tfds = pytest.importorskip("tensorflow_datasets")

from datasets.common.file_readers import read_pfm  # noqa: E402
from datasets.common.manual_dir import ManualDirError  # noqa: E402
from datasets.common.prepare import prepare_dataset  # noqa: E402
from datasets.hci_lightfield import hci_lightfield_dataset_builder as hci  # noqa: E402
from datasets.hci_lightfield.light_field_refocus import refocused_stack, view_ordering_signs  # noqa: E402
from fake_files import write_pfm, write_png  # noqa: E402

PLANE_DISPARITY = 1.3


def _light_field(signs, size=24, seed=0):
    """9 x 9 views of a textured plane of constant disparity: view (u, v) = centre shifted by s d offset."""
    rng = np.random.default_rng(seed)
    centre = ndimage.gaussian_filter(rng.uniform(0, 1, (size, size, 3)), (1.5, 1.5, 0))
    centre = (centre - centre.min()) / np.ptp(centre)
    views = np.empty((9, 9, size, size, 3))
    for u in range(9):
        for v in range(9):
            shift = (signs[0] * PLANE_DISPARITY * (u - 4), signs[1] * PLANE_DISPARITY * (v - 4), 0)
            views[u, v] = ndimage.shift(centre, shift, order=3, mode="nearest")
    return views.astype(np.float32)


def _reference_stack(views, disparities, signs):
    """Direct mean of SciPy-translated views (output[q] = view[q + s f offset])."""
    out = []
    for f in disparities:
        out.append(np.mean([ndimage.shift(views[u, v], (-signs[0] * f * (u - 4), -signs[1] * f * (v - 4), 0),
                                          order=1, mode="nearest") for u in range(9) for v in range(9)], axis=0))
    return np.stack(out)


def test_refocusing_matches_scipy_and_focuses_the_plane():
    signs = (1, -1)
    views = _light_field(signs)
    disparities = [-2.0, 0.0, PLANE_DISPARITY]
    stack = refocused_stack(views, disparities, signs)
    np.testing.assert_allclose(stack, _reference_stack(views, disparities, signs), atol=1e-5)
    interior = (slice(8, 16), slice(8, 16))
    in_focus_error = np.abs(stack[2][interior] - views[4, 4][interior]).mean()
    out_of_focus_error = np.abs(stack[0][interior] - views[4, 4][interior]).mean()
    assert in_focus_error < 0.01 < out_of_focus_error


@pytest.mark.parametrize("signs", [(1, 1), (1, -1), (-1, 1), (-1, -1)])
def test_view_ordering_signs_are_recovered(signs):
    views = _light_field(signs, seed=1)
    assert view_ordering_signs(views, np.full(views.shape[2:4], PLANE_DISPARITY)) == signs


def test_pfm_reader_handles_both_byte_orders(tmp_path):
    array = np.arange(12, dtype=np.float32).reshape(3, 4) - 5.5
    for little in (True, False):
        write_pfm(tmp_path / "a.pfm", array, little_endian=little)
        np.testing.assert_array_equal(read_pfm(tmp_path / "a.pfm"), array)
    # Hand-built file: 2 x 1 grey, little-endian, bottom row stored first.
    (tmp_path / "b.pfm").write_bytes(b"Pf\n1 2\n-1.0\n" + np.float32([7.0, 3.0]).tobytes())
    np.testing.assert_array_equal(read_pfm(tmp_path / "b.pfm"), [[3.0], [7.0]])


def _write_scene(scene_dir, views, disparity=None):
    os.makedirs(scene_dir)
    u8 = np.round(views * 255).astype(np.uint8)
    for k in range(81):
        write_png(os.path.join(scene_dir, hci.view_name(k)), u8[k // 9, k % 9])
    if disparity is not None:
        write_pfm(os.path.join(scene_dir, hci.GT_FILE), disparity)
    return u8


def test_benchmark_folder_round_trip(tmp_path):
    signs = (-1, 1)  # not the default, so the builder must measure it
    manual = tmp_path / "manual"
    disparity = np.full((24, 24), PLANE_DISPARITY, np.float32)
    disparity[0, 0] = np.inf  # a pixel without ground truth
    training = _write_scene(str(manual / "training" / "dino"), _light_field(signs, seed=2), disparity)
    test = _write_scene(str(manual / "test" / "bedroom"), _light_field(signs, seed=3))
    builder = prepare_dataset("hci_lightfield", tmp_path / "data", manual_dir=manual)
    assert builder.info.metadata["focus_unit"] == "disparity_px"
    source = tfds.data_source("hci_lightfield", data_dir=str(tmp_path / "data"), download=False)
    assert {split: len(source[split]) for split in source} == {"training": 1, "test": 1}
    record = source["training"][0]
    assert record["id"] == b"training/dino"
    np.testing.assert_allclose(record["focus_positions"], np.linspace(-2.5, 2.5, 10), rtol=1e-6)
    reference = _reference_stack(training.astype(np.float32) / 255, np.linspace(-2.5, 2.5, 10), signs)
    assert np.abs(record["stack"].astype(float) - np.round(reference * 255)).max() <= 1
    np.testing.assert_array_equal(record["aif"], training[4, 4])
    assert not record["valid"][0, 0] and record["valid"].sum() == 24 * 24 - 1
    np.testing.assert_array_equal(record["depth"][1:, 1:], disparity[1:, 1:])
    test_record = source["test"][0]
    assert test_record["id"] == b"test/bedroom" and not test_record["valid"].any()
    np.testing.assert_array_equal(test_record["aif"], test[4, 4])


def test_missing_views_and_ground_truth_are_named(tmp_path):
    manual = tmp_path / "manual"
    _write_scene(str(manual / "training" / "dino"), np.zeros((9, 9, 4, 4, 3), np.float32))
    os.remove(manual / "training" / "dino" / hci.view_name(17))
    with pytest.raises(ManualDirError) as error:
        prepare_dataset("hci_lightfield", tmp_path / "data", manual_dir=manual)
    assert "input_Cam017.png" in str(error.value) and "gt_disp_lowres.pfm" in str(error.value)
