"""focal_engine: a shrunken preparation to array_record, read back with tfds.data_source: the seeded split
is reproducible, has the shapes and metadata it promises, and matches the engine's own draw."""

from unittest import mock

import numpy as np
import pytest

tfds = pytest.importorskip("tensorflow_datasets")

from datasets.common.prepare import DATASET_NAMES, needs_manual_dir, prepare_dataset  # noqa: E402
from datasets.focal_engine import focal_engine_dataset_builder as builder_module  # noqa: E402
from dualfocus_jax.engine import CAMERA_FAMILIES, SCENE_FAMILIES  # noqa: E402

SMALL = {"SLICE_COUNTS": (3, 5), "STACKS_PER_SLICE_COUNT": 4, "IMAGE_SIZE": (40, 48)}


def _prepare(data_dir):
    with mock.patch.multiple(builder_module.Builder, **SMALL):
        prepare_dataset("focal_engine", data_dir)
    return tfds.data_source("focal_engine", data_dir=str(data_dir), download=False)


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    return _prepare(tmp_path_factory.mktemp("first")), _prepare(tmp_path_factory.mktemp("second"))


def test_registered_and_needs_no_manual_files():
    assert "focal_engine" in DATASET_NAMES and not needs_manual_dir("focal_engine")


def test_splits_shapes_dtypes_and_metadata(sources):
    source, _ = sources
    assert {split: len(source[split]) for split in source} == {"test_3": 4, "test_5": 4}
    for split, count in (("test_3", 3), ("test_5", 5)):
        indices = []
        for position in range(4):
            record = source[split][position]
            index = int(record["id"].decode().split("_")[1])  # TFDS stores records in its own order
            indices.append(index)
            assert record["stack"].dtype == np.uint8 and record["stack"].shape == (count, 40, 48, 3)
            assert record["focus_positions"].dtype == np.float32 and record["focus_positions"].shape == (count,)
            assert np.all(np.diff(record["focus_positions"]) > 0)
            assert record["depth"].shape == (40, 48) and record["depth"].min() > 0
            assert record["valid"].all() and record["aif"].shape == (40, 48, 3)
            assert int(record["num_slices"]) == count
            # Camera family i % 3, scene family (i // 3) % 9.
            assert record["camera_family"].decode() == CAMERA_FAMILIES[index % 3]
            assert record["scene_family"].decode() == SCENE_FAMILIES[index // 3]
            assert record["camera"].decode() in record["id"].decode()
            assert record["spacing"].decode() in ("distance", "diopter", "irregular")
            assert record["f_number"] > 0 and record["focal_length_mm"] > 0 and record["pixel_size_um"] > 0
            assert 0 < record["scene_near_m"] < record["scene_far_m"]
        assert sorted(indices) == [0, 1, 2, 3]


def test_same_seed_gives_the_same_split(sources):
    first, second = sources
    for split in ("test_3", "test_5"):
        for position in range(4):
            a, b = first[split][position], second[split][position]
            assert a["id"] == b["id"]
            for key in ("stack", "focus_positions", "depth", "aif"):
                np.testing.assert_array_equal(a[key], b[key])


def test_records_are_the_engine_draw_whatever_the_split_size(sources):
    source, _ = sources
    # Stack 2 of the 5-slice split, drawn alone (no builder, another split size): the same example.
    example_id, example = builder_module.engine_test_stack(5, 2, (40, 48))
    record = {r["id"].decode(): r for r in (source["test_5"][i] for i in range(4))}[example_id]
    np.testing.assert_array_equal(record["stack"], example["stack"])
    np.testing.assert_array_equal(record["depth"], example["depth"])
    assert record["coverage"].decode() == example["coverage"]
    # Different slice counts are different draws.
    assert not np.array_equal(source["test_3"][0]["aif"], source["test_5"][0]["aif"])
