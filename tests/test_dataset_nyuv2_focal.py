"""nyuv2_focal: a fake labeled MAT v7.3 + splits.mat (5 slices) and a fake BTS sync layout (10 slices),
prepared to array_record and read back; crop, mask, focus positions and rendering checked."""

import os

import numpy as np
import pytest

tfds = pytest.importorskip("tensorflow_datasets")

from datasets.common.manual_dir import ManualDirError  # noqa: E402
from datasets.common.prepare import prepare_dataset  # noqa: E402
from dualfocus_jax.rendering import NYUV2_CAMERA, render_focal_stack  # noqa: E402
from fake_files import write_jpeg, write_mat5, write_mat73, write_png  # noqa: E402


def _records(source):
    return {r["id"].decode(): r for r in (source[i] for i in range(len(source)))}


def _frame(rng):
    """A 480 x 640 frame: smooth image, depth 1-4 m with a hole and a too-far patch."""
    rows, cols = np.meshgrid(np.linspace(0, 1, 480), np.linspace(0, 1, 640), indexing="ij")
    image = np.stack([rows, cols, rng.uniform(0, 1) * np.ones_like(rows)], -1)
    image = (255 * np.clip(image + 0.1 * rng.standard_normal(image.shape), 0, 1)).astype(np.uint8)
    depth = (1.0 + 3.0 * cols + 0.2 * rng.uniform(size=rows.shape)).astype(np.float32)
    depth[200:210, 300:310] = 0.0
    depth[100:104, 100:104] = 12.0
    return image, depth


def _check_record(record, image, depth_m, num_slices):
    crop_image, crop_depth = image[48:432, 64:576], depth_m[48:432, 64:576]
    valid = (crop_depth > 1e-3) & (crop_depth < 10)
    assert record["stack"].shape == (num_slices, 384, 512, 3)
    np.testing.assert_array_equal(record["aif"], crop_image)
    np.testing.assert_array_equal(record["valid"], valid)
    np.testing.assert_allclose(record["depth"], np.where(valid, crop_depth, 0), rtol=1e-6)
    focus = np.linspace(crop_depth[valid].min(), crop_depth[valid].max(), num_slices)
    np.testing.assert_allclose(record["focus_positions"], focus, rtol=1e-6)
    reference = render_focal_stack(crop_image.astype(np.float32) / 255, crop_depth, focus.astype(np.float32),
                                   NYUV2_CAMERA, mode="gaussian", kernel_size=7)
    reference = np.round(np.clip(np.asarray(reference), 0, 1) * 255)
    assert np.abs(record["stack"].astype(float) - reference).max() <= 1


def test_labeled_mat_layout_with_5_slices(tmp_path):
    rng = np.random.default_rng(0)
    frames = [_frame(rng) for _ in range(3)]
    manual = tmp_path / "manual"
    manual.mkdir()
    # MATLAB shapes: images (480, 640, 3, N), depths (480, 640, N); v7.3 stores them with reversed axes.
    images = np.stack([f[0] for f in frames], -1)
    depths = np.stack([f[1] for f in frames], -1)
    write_mat73(manual / "nyu_depth_v2_labeled.mat", {"images": images, "depths": depths})
    write_mat5(manual / "splits.mat", {"trainNdxs": np.array([[1], [3]]), "testNdxs": np.array([[2]])})
    builder = prepare_dataset("nyuv2_focal", tmp_path / "data", manual_dir=manual, config="5_slices")
    assert builder.info.metadata["focus_unit"] == "m"
    source = tfds.data_source("nyuv2_focal/5_slices", data_dir=str(tmp_path / "data"), download=False)
    train, test = _records(source["train"]), _records(source["test"])
    assert sorted(train) == ["train_0001", "train_0003"] and sorted(test) == ["test_0002"]
    _check_record(train["train_0003"], *frames[2], 5)
    _check_record(test["test_0002"], *frames[1], 5)


def test_bts_layout_with_10_slices(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(1)
    manual = tmp_path / "bts"
    written = {}
    lines = {"train": [], "test": []}
    layout = (("train", "sync", "kitchen_0028b", 45), ("test", "official_splits/test", "bathroom", 7))
    for split, root, scene, number in layout:
        folder = manual / root / scene
        folder.mkdir(parents=True)
        image, depth = _frame(rng)
        depth_mm = np.round(depth * 1000).astype(np.uint16)
        write_jpeg(folder / f"rgb_{number:05d}.jpg", image)
        write_png(folder / f"sync_depth_{number:05d}.png", depth_mm)
        decoded = np.asarray(Image.open(folder / f"rgb_{number:05d}.jpg"))  # JPEG is lossy: compare decoded
        written[f"{scene}/rgb_{number:05d}"] = (decoded, depth_mm.astype(np.float32) / 1000)
        prefix = "/" if split == "train" else ""  # the BTS train list starts paths with a slash
        lines[split].append(
            f"{prefix}{scene}/rgb_{number:05d}.jpg {prefix}{scene}/sync_depth_{number:05d}.png 518.8579")
    lines["train"].append("/kitchen_0028b/rgb_00046.jpg None 518.8579")  # frame without GT: skipped
    (manual / "nyudepthv2_train_files_with_gt.txt").write_text("\n".join(lines["train"]) + "\n")
    (manual / "nyudepthv2_test_files_with_gt.txt").write_text("\n".join(lines["test"]) + "\n")
    prepare_dataset("nyuv2_focal", tmp_path / "data", manual_dir=manual, config="10_slices")
    source = tfds.data_source("nyuv2_focal/10_slices", data_dir=str(tmp_path / "data"), download=False)
    train, test = _records(source["train"]), _records(source["test"])
    assert sorted(train) == ["kitchen_0028b/rgb_00045"] and sorted(test) == ["bathroom/rgb_00007"]
    _check_record(test["bathroom/rgb_00007"], *written["bathroom/rgb_00007"], 10)


def test_missing_layouts_and_listed_files_are_named(tmp_path):
    manual = tmp_path / "manual"
    manual.mkdir()
    (manual / "readme.txt").write_text("nothing here")
    with pytest.raises(ManualDirError, match="nyu_depth_v2_labeled.mat"):
        prepare_dataset("nyuv2_focal", tmp_path / "data", manual_dir=manual)
    write_mat5(manual / "splits.mat", {"trainNdxs": np.array([[1]]), "testNdxs": np.array([[2]])})
    with pytest.raises(ManualDirError, match="(?s)1 expected file.*nyu_depth_v2_labeled.mat"):
        prepare_dataset("nyuv2_focal", tmp_path / "data", manual_dir=manual)
    os.remove(manual / "splits.mat")
    (manual / "sync" / "a").mkdir(parents=True)
    (manual / "official_splits" / "test").mkdir(parents=True)
    (manual / "nyudepthv2_train_files_with_gt.txt").write_text("/a/rgb_00001.jpg /a/sync_depth_00001.png 518.8\n")
    (manual / "nyudepthv2_test_files_with_gt.txt").write_text("")
    with pytest.raises(ManualDirError) as error:
        prepare_dataset("nyuv2_focal", tmp_path / "data", manual_dir=manual)
    assert os.path.join("sync", "a", "rgb_00001.jpg") in str(error.value)
    assert os.path.join("sync", "a", "sync_depth_00001.png") in str(error.value)
