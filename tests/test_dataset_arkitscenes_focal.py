"""arkitscenes_focal: fake upsampling/Validation frames (PNG RGB + uint16 depth), prepared to
array_record and read back; resizing, mask, focus positions, camera and missing files checked."""

import os

import numpy as np
import pytest

tfds = pytest.importorskip("tensorflow_datasets")

from datasets.arkitscenes_focal import arkitscenes_focal_dataset_builder as arkit  # noqa: E402
from datasets.common.manual_dir import ManualDirError  # noqa: E402
from datasets.common.prepare import prepare_dataset  # noqa: E402
from dualfocus_jax.rendering import arkitscenes_camera, render_focal_stack  # noqa: E402
from fake_files import write_png  # noqa: E402


def _write_frame(video_dir, name, rng, size=(240, 320)):
    (video_dir / "wide").mkdir(parents=True, exist_ok=True)
    (video_dir / "highres_depth").mkdir(parents=True, exist_ok=True)
    image = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
    depth_mm = rng.integers(400, 5000, size).astype(np.uint16)
    depth_mm[:20, :30] = 0  # no scanner return
    write_png(video_dir / "wide" / name, image)
    write_png(video_dir / "highres_depth" / name, depth_mm)
    return image, depth_mm


def test_frames_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "manual" / "upsampling" / "Validation"
    written = {
        "41069021/41069021_305.244.png": _write_frame(root / "41069021", "41069021_305.244.png", rng),
        "41069021/41069021_306.243.png": _write_frame(root / "41069021", "41069021_306.243.png", rng),
        "47333462/47333462_10.500.png": _write_frame(root / "47333462", "47333462_10.500.png", rng),
    }
    builder = prepare_dataset("arkitscenes_focal", tmp_path / "data", manual_dir=tmp_path / "manual")
    assert builder.info.metadata["focus_unit"] == "m"
    source = tfds.data_source("arkitscenes_focal", data_dir=str(tmp_path / "data"), download=False)
    records = {r["id"].decode(): r for r in (source["test"][i] for i in range(len(source["test"])))}
    assert sorted(records) == ["41069021/41069021_305.244", "41069021/41069021_306.243", "47333462/47333462_10.500"]
    image, depth_mm = written["47333462/47333462_10.500.png"]
    record = records["47333462/47333462_10.500"]
    # A 240 x 320 frame doubles to 480 x 640: area and nearest resizing both replicate each pixel 2 x 2.
    big_image = np.repeat(np.repeat(image, 2, 0), 2, 1)
    big_depth = np.repeat(np.repeat(depth_mm, 2, 0), 2, 1).astype(np.float32) / 1000
    np.testing.assert_array_equal(record["aif"], big_image)
    np.testing.assert_allclose(record["depth"], big_depth, rtol=1e-6)
    np.testing.assert_array_equal(record["valid"], big_depth > 0)
    assert not record["valid"][:40, :60].any()
    focus = np.linspace(big_depth[big_depth > 0].min(), big_depth[big_depth > 0].max(), 5)
    np.testing.assert_allclose(record["focus_positions"], focus, rtol=1e-6)
    reference = render_focal_stack(big_image.astype(np.float32) / 255, big_depth, focus.astype(np.float32),
                                   arkitscenes_camera(560), mode="gaussian", kernel_size=7)
    reference = np.round(np.clip(np.asarray(reference), 0, 1) * 255)
    assert record["stack"].shape == (5, 480, 640, 3)
    assert np.abs(record["stack"].astype(float) - reference).max() <= 1


def test_nearest_resize_takes_the_pixel_under_each_centre():
    array = np.arange(12).reshape(3, 4)
    # Output centres fall at input rows 0.75, 2.25 and columns 1.0, 3.0.
    np.testing.assert_array_equal(arkit.nearest_resize(array, (2, 2)), [[1, 3], [9, 11]])
    np.testing.assert_array_equal(arkit.nearest_resize(array, (6, 8)), np.repeat(np.repeat(array, 2, 0), 2, 1))


def test_missing_depth_and_missing_folder_are_named(tmp_path):
    rng = np.random.default_rng(1)
    root = tmp_path / "manual" / "Validation"
    _write_frame(root / "41069021", "41069021_1.000.png", rng, size=(8, 8))
    _write_frame(root / "41069021", "41069021_2.000.png", rng, size=(8, 8))
    os.remove(root / "41069021" / "highres_depth" / "41069021_2.000.png")
    with pytest.raises(ManualDirError, match=r"41069021_2\.000\.png"):
        prepare_dataset("arkitscenes_focal", tmp_path / "data", manual_dir=tmp_path / "manual")
    other = tmp_path / "other"
    other.mkdir()
    (other / "wide").mkdir()
    with pytest.raises(ManualDirError, match="upsampling/Validation"):
        prepare_dataset("arkitscenes_focal", tmp_path / "data", manual_dir=other)
