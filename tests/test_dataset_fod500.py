"""fod500: fake TIFF/EXR scenes in the real layout, prepared to array_record and read back with
tfds.data_source; missing and corrupt files; the absl entry point on the full 500-scene layout."""

import os
import subprocess
import sys
from unittest import mock

import numpy as np
import pytest

tfds = pytest.importorskip("tensorflow_datasets")

from datasets.common.manual_dir import CorruptFileError, ManualDirError  # noqa: E402
from datasets.common.prepare import prepare_dataset  # noqa: E402
from datasets.fod500 import fod500_dataset_builder as fod  # noqa: E402
from fake_files import write_exr_depth, write_tiff_rgb  # noqa: E402

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMALL_INDICES = {"train": range(0, 3), "test": range(400, 402)}


def write_scene(folder, index, rng, size=(12, 16), with_aif=False):
    """Writes one scene; returns (slices (5, H, W, 3) uint8, depth (H, W) float16-exact float32)."""
    slices = rng.integers(0, 256, (5, *size, 3), dtype=np.uint8)
    for j in range(5):
        write_tiff_rgb(os.path.join(folder, fod.slice_name(index, j)), slices[j])
    depth = rng.uniform(0.1, 2.0, size).astype(np.float16).astype(np.float32)
    depth[0, :3] = 0.0  # background without ground truth
    write_exr_depth(os.path.join(folder, fod.depth_name(index)), depth)
    aif = None
    if with_aif:
        aif = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
        write_tiff_rgb(os.path.join(folder, fod.aif_name(index)), aif)
    return slices, depth, aif


@pytest.fixture()
def small_manual_dir(tmp_path):
    folder = tmp_path / "manual" / "fs_6"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    written = {}
    for indices in SMALL_INDICES.values():
        for index in indices:
            written[f"{index:06d}"] = write_scene(folder, index, rng, with_aif=index in (0, 400))
    return tmp_path / "manual", written


def test_prepared_examples_match_the_files(small_manual_dir, tmp_path):
    manual_dir, written = small_manual_dir
    with mock.patch.object(fod.Builder, "SPLIT_INDICES", SMALL_INDICES):
        builder = prepare_dataset("fod500", tmp_path / "data", manual_dir=manual_dir)
    assert builder.info.metadata["focus_unit"] == "m"
    source = tfds.data_source("fod500", data_dir=str(tmp_path / "data"), download=False)
    assert {split: len(source[split]) for split in source} == {"train": 3, "test": 2}
    seen = set()
    for split in ("train", "test"):
        for i in range(len(source[split])):
            record = source[split][i]
            example_id = record["id"].decode()
            seen.add(example_id)
            slices, depth, aif = written[example_id]
            np.testing.assert_array_equal(record["stack"], slices)
            np.testing.assert_array_equal(record["focus_positions"], np.float32([0.1, 0.15, 0.3, 0.7, 1.5]))
            np.testing.assert_array_equal(record["depth"], depth)
            np.testing.assert_array_equal(record["valid"], depth > 0)
            assert not record["valid"][0, :3].any()
            assert bool(record["has_aif"]) == (aif is not None)
            np.testing.assert_array_equal(record["aif"], aif if aif is not None else np.zeros_like(slices[0]))
    assert seen == {"000000", "000001", "000002", "000400", "000401"}
    assert {source["test"][i]["id"] for i in range(2)} == {b"000400", b"000401"}


def test_missing_files_are_named_before_anything_is_written(small_manual_dir, tmp_path):
    manual_dir, _ = small_manual_dir
    os.remove(manual_dir / "fs_6" / fod.slice_name(1, 3))
    os.remove(manual_dir / "fs_6" / fod.depth_name(401))
    with mock.patch.object(fod.Builder, "SPLIT_INDICES", SMALL_INDICES):
        with pytest.raises(ManualDirError) as error:
            prepare_dataset("fod500", tmp_path / "data", manual_dir=manual_dir)
    assert "000001_03All.tif" in str(error.value) and "000401Dpt.exr" in str(error.value)
    assert "2 expected file(s) missing" in str(error.value)
    assert not (tmp_path / "data" / "fod500").exists()


@pytest.mark.parametrize("state", ["absent", "empty", "unrelated"])
def test_absent_empty_or_foreign_manual_dir_is_rejected_with_instructions(tmp_path, state):
    manual_dir = tmp_path / "manual"
    if state != "absent":
        manual_dir.mkdir()
    if state == "unrelated":
        (manual_dir / "notes.txt").write_text("hello")
    with pytest.raises(ManualDirError, match="fs_6") as error:
        prepare_dataset("fod500", tmp_path / "data", manual_dir=manual_dir)
    assert {"absent": "does not exist", "empty": "is empty", "unrelated": "No FoD500 files"}[state] in str(error.value)


def test_corrupt_file_is_named_and_no_dataset_is_left_behind(small_manual_dir, tmp_path):
    manual_dir, _ = small_manual_dir
    corrupt = manual_dir / "fs_6" / fod.depth_name(2)
    corrupt.write_bytes(b"\x76\x2f\x31\x01 truncated")  # EXR magic number, then nothing usable
    data_dir = tmp_path / "data"
    with mock.patch.object(fod.Builder, "SPLIT_INDICES", SMALL_INDICES):
        with pytest.raises(CorruptFileError, match="000002Dpt.exr"):
            prepare_dataset("fod500", data_dir, manual_dir=manual_dir)
    # Scenes 0 and 1 were already written when scene 2 failed: nothing may look finished.
    leftovers = [p for p in (data_dir / "fod500").rglob("*")] if (data_dir / "fod500").exists() else []
    assert not any(p.name == "dataset_info.json" for p in leftovers)
    assert not any(p.name == "1.0.0" for p in leftovers)
    # No prepared version: tfds falls back to its default TFRECORD format, which has no random-access source.
    with pytest.raises(NotImplementedError, match="Random access data source"):
        tfds.data_source("fod500", data_dir=str(data_dir), download=False)


def test_absl_entry_point_prepares_the_official_split(tmp_path):
    folder = tmp_path / "manual" / "fs_6"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    for index in range(500):
        write_scene(folder, index, rng, size=(4, 4))
    command = [sys.executable, "-m", "experiments.prepare_data", "--dataset=fod500",
               f"--manual_dir={tmp_path / 'manual'}", f"--data_dir={tmp_path / 'data'}"]
    result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "test: 100, train: 400" in result.stdout
    source = tfds.data_source("fod500", data_dir=str(tmp_path / "data"), download=False)
    ids = sorted(int(source["test"][i]["id"]) for i in range(len(source["test"])))
    assert ids == list(range(400, 500))


def test_absl_entry_point_names_missing_files_and_fails(tmp_path):
    folder = tmp_path / "manual" / "fs_6"
    folder.mkdir(parents=True)
    write_scene(folder, 0, np.random.default_rng(2), size=(4, 4))
    command = [sys.executable, "-m", "experiments.prepare_data", "--dataset=fod500",
               f"--manual_dir={tmp_path / 'manual'}", f"--data_dir={tmp_path / 'data'}"]
    result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    assert "000001_00All.tif" in result.stderr and result.stderr.startswith("error: ")
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "data" / "fod500").exists()
