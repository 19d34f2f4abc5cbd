"""synthetic_focal: a shrunken preparation to array_record, read back with tfds.data_source, checked
against the scenes and an independent (unbatched) render; plus the procedural scenes' promises."""

from unittest import mock

import numpy as np
import pytest

tfds = pytest.importorskip("tensorflow_datasets")

from datasets.common.prepare import prepare_dataset  # noqa: E402
from datasets.common.rendered_stacks import rendered_stack_u8  # noqa: E402
from datasets.synthetic_focal import synthetic_focal_dataset_builder as builder_module  # noqa: E402
from datasets.synthetic_focal.procedural_scenes import SCENE_FAMILIES, procedural_scene  # noqa: E402
from dualfocus_jax.rendering import NYUV2_CAMERA  # noqa: E402

# 7 train scenes: one padded render batch of 8 and every family at least once.
SMALL_SPLITS = {"train": 7, "test": 2}


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("tfds")
    with mock.patch.object(builder_module.Builder, "SPLIT_SIZES", SMALL_SPLITS):
        builder = prepare_dataset("synthetic_focal", data_dir)
    return builder, tfds.data_source("synthetic_focal", data_dir=str(data_dir), download=False)


def _by_id(source):
    return {record["id"].decode(): record for record in (source[i] for i in range(len(source)))}


def test_splits_shapes_dtypes_and_unit(prepared):
    builder, source = prepared
    assert {split: len(source[split]) for split in source} == {"train": 7, "test": 2, "middlebury": 1}
    assert builder.info.metadata["focus_unit"] == "m"
    record = source["train"][0]
    assert record["stack"].dtype == np.uint8 and record["stack"].shape == (5, 128, 128, 3)
    assert record["focus_positions"].dtype == np.float32 and record["focus_positions"].shape == (5,)
    assert record["depth"].dtype == np.float32 and record["depth"].shape == (128, 128)
    assert record["valid"].dtype == np.bool_ and record["aif"].shape == (128, 128, 3)
    middlebury = source["middlebury"][0]
    assert middlebury["stack"].shape == (5, 250, 370, 3)
    assert middlebury["id"] == b"middlebury_motorcycle"


def test_procedural_examples_match_scenes_and_an_unbatched_render(prepared):
    _, source = prepared
    records = _by_id(source["train"])
    assert sorted(records) == sorted(builder_module.procedural_scene_of("train", i)[0] for i in range(7))
    for index in (0, 3, 6):
        example_id, scene, focus = builder_module.procedural_scene_of("train", index)
        record = records[example_id]
        np.testing.assert_allclose(record["focus_positions"], np.linspace(scene.near_m, scene.far_m, 5), rtol=1e-6)
        np.testing.assert_array_equal(record["depth"], scene.depth_m)
        assert record["valid"].all()
        np.testing.assert_array_equal(record["aif"], np.round(scene.image * 255).astype(np.uint8))
        reference = rendered_stack_u8(scene.image, scene.depth_m, focus, NYUV2_CAMERA, mode="layered", num_layers=16)
        # Batched (vmapped) and single renders may round differently by one grey level.
        assert np.abs(record["stack"].astype(int) - reference.astype(int)).max() <= 1


def test_plane_is_sharpest_in_the_slice_focused_nearest_to_it(prepared):
    _, source = prepared
    record = _by_id(source["train"])["train_0000_plane"]
    plane_depth = float(record["depth"][0, 0])
    grey = record["stack"].astype(np.float64).mean(-1)
    sharpness = [np.mean(np.diff(s, axis=0) ** 2) + np.mean(np.diff(s, axis=1) ** 2) for s in grey]
    assert int(np.argmax(sharpness)) == int(np.argmin(np.abs(record["focus_positions"] - plane_depth)))


def test_middlebury_example_matches_the_downscaled_scene(prepared):
    _, source = prepared
    record = source["middlebury"][0]
    image, depth, valid = builder_module.downscaled_motorcycle()
    np.testing.assert_array_equal(record["valid"], valid)
    np.testing.assert_allclose(record["depth"], np.where(valid, depth, 0), rtol=1e-6)
    assert 0.85 < valid.mean() < 0.99
    expected_focus = np.linspace(depth[valid].min(), depth[valid].max(), 5)
    np.testing.assert_allclose(record["focus_positions"], expected_focus, rtol=1e-5)
    # 2x2 block means of the original, computed here independently.
    from dualfocus_jax.embedded_scenes import motorcycle_scene

    original = motorcycle_scene()
    np.testing.assert_allclose(image[10, 20], original.image[20:22, 40:42].reshape(4, 3).mean(0), atol=1e-6)
    if original.valid[20:22, 40:42].all():
        np.testing.assert_allclose(depth[10, 20], original.depth_m[20:22, 40:42].mean(), rtol=1e-5)


def test_scenes_are_deterministic_and_splits_differ():
    first = builder_module.procedural_scene_of("test", 4)[1]
    again = builder_module.procedural_scene_of("test", 4)[1]
    other_split = builder_module.procedural_scene_of("train", 4)[1]
    np.testing.assert_array_equal(first.image, again.image)
    np.testing.assert_array_equal(first.depth_m, again.depth_m)
    assert not np.array_equal(first.image, other_split.image)


@pytest.mark.parametrize("family", SCENE_FAMILIES)
def test_each_family_keeps_depth_in_its_design_range(family):
    scene = procedural_scene(family, np.random.default_rng(7), (64, 64))
    assert scene.image.shape == (64, 64, 3) and scene.image.dtype == np.float32
    assert 0.0 <= scene.image.min() and scene.image.max() <= 1.0
    assert scene.near_m - 1e-5 <= scene.depth_m.min() and scene.depth_m.max() <= scene.far_m + 1e-5
    if family == "plane":
        assert np.ptp(scene.depth_m) == 0
    else:  # every other family spans its whole range, so linspace(near, far) focus brackets it tightly
        np.testing.assert_allclose([scene.depth_m.min(), scene.depth_m.max()], [scene.near_m, scene.far_m], rtol=1e-5)


def test_occluders_are_nearer_than_background_and_textureless_patches_are_flat():
    scene = procedural_scene("occluders", np.random.default_rng(3), (96, 96))
    border_depth = np.concatenate([scene.depth_m[0], scene.depth_m[-1], scene.depth_m[:, 0], scene.depth_m[:, -1]])
    assert scene.depth_m.min() < border_depth.max()
    flat = procedural_scene("textureless", np.random.default_rng(3), (96, 96))
    # A flat patch: some pixel whose 3x3 neighbourhood has exactly one colour.
    image = flat.image
    height, width = image.shape[:2]
    same = np.ones((height - 2, width - 2), bool)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            neighbour = image[1 + dy:height - 1 + dy, 1 + dx:width - 1 + dx]
            same &= np.all(neighbour == image[1:-1, 1:-1], -1)
    assert same.mean() > 0.01


def test_bad_scene_arguments_are_rejected():
    with pytest.raises(ValueError, match="Unknown scene family"):
        procedural_scene("cube", np.random.default_rng(0))
    with pytest.raises(ValueError, match="at least 16x16"):
        procedural_scene("plane", np.random.default_rng(0), (8, 8))
