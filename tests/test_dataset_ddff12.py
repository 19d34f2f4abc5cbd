"""ddff12: fake HDF5 files (official config) and fake raw scenes with a MAT calibration (dfv_resplit),
prepared to array_record and read back with tfds.data_source; missing and damaged inputs."""

import os

import numpy as np
import pytest

tfds = pytest.importorskip("tensorflow_datasets")

from datasets.common.manual_dir import CorruptFileError, ManualDirError  # noqa: E402
from datasets.common.prepare import prepare_dataset  # noqa: E402
from datasets.ddff12 import ddff12_dataset_builder as ddff  # noqa: E402
from fake_files import write_h5, write_mat5, write_png  # noqa: E402

FILE_ORDER_DISPARITIES = np.linspace(0.28248, 0.02018, 10)


def _records(source):
    return {r["id"].decode(): r for r in (source[i] for i in range(len(source)))}


@pytest.fixture()
def official_manual_dir(tmp_path):
    rng = np.random.default_rng(0)
    manual = tmp_path / "manual"
    manual.mkdir()
    arrays = {
        # The release stores stacks as floats in 0..255; check rounding with non-integer values.
        "stack_train": rng.uniform(0, 255, (3, 10, 8, 12, 3)).astype(np.float32),
        "disp_train": rng.uniform(0.02, 0.28, (3, 8, 12)).astype(np.float32),
        "stack_val": rng.integers(0, 256, (2, 10, 8, 12, 3), dtype=np.uint8),
        "disp_val": rng.uniform(0.02, 0.28, (2, 8, 12)).astype(np.float32),
    }
    arrays["disp_train"][0, 0, :4] = 0.0  # no ground truth there
    write_h5(manual / ddff.TRAINVAL_FILE, arrays)
    test = {"stack_test": rng.integers(0, 256, (2, 10, 9, 14, 3), dtype=np.uint8)}
    write_h5(manual / ddff.TEST_FILE, test)
    return manual, arrays, test


def test_official_config_round_trip(official_manual_dir, tmp_path):
    manual, arrays, test = official_manual_dir
    builder = prepare_dataset("ddff12", tmp_path / "data", manual_dir=manual, config="official")
    assert builder.info.metadata["focus_unit"] == "disparity"
    source = tfds.data_source("ddff12/official", data_dir=str(tmp_path / "data"), download=False)
    assert {s: len(source[s]) for s in source} == {"train": 3, "validation": 2, "test": 2}
    # Stored ascending: the file's slice order reversed.
    train = _records(source["train"])
    record = train["train_00000"]
    np.testing.assert_allclose(record["focus_positions"], FILE_ORDER_DISPARITIES[::-1], rtol=1e-6)
    expected_stack = np.clip(np.round(arrays["stack_train"][0]), 0, 255).astype(np.uint8)[::-1]
    np.testing.assert_array_equal(record["stack"], expected_stack)
    np.testing.assert_array_equal(record["depth"], arrays["disp_train"][0])
    np.testing.assert_array_equal(record["valid"], arrays["disp_train"][0] > 0)
    assert not record["valid"][0, :4].any() and record["valid"].sum() == 8 * 12 - 4
    validation = _records(source["validation"])["validation_00001"]
    np.testing.assert_array_equal(validation["stack"], arrays["stack_val"][1][::-1])
    test_record = _records(source["test"])["test_00001"]
    assert test_record["stack"].shape == (10, 9, 14, 3)
    np.testing.assert_array_equal(test_record["stack"], test["stack_test"][1][::-1])
    assert not test_record["valid"].any() and not test_record["depth"].any()
    assert "aif" not in test_record


def test_official_config_names_missing_file_and_missing_keys(official_manual_dir, tmp_path):
    manual, arrays, _ = official_manual_dir
    os.remove(manual / ddff.TEST_FILE)
    with pytest.raises(ManualDirError, match="ddff-dataset-test.h5"):
        prepare_dataset("ddff12", tmp_path / "data", manual_dir=manual, config="official")
    write_h5(manual / ddff.TEST_FILE, {"something_else": np.zeros(3)})
    with pytest.raises(CorruptFileError, match=r"ddff-dataset-test.h5.*stack_test"):
        prepare_dataset("ddff12", tmp_path / "data", manual_dir=manual, config="official")
    (manual / ddff.TRAINVAL_FILE).write_bytes(b"not an hdf5 file")
    with pytest.raises(CorruptFileError, match="ddff-dataset-trainval.h5"):
        prepare_dataset("ddff12", tmp_path / "data", manual_dir=manual, config="official")
    assert not (tmp_path / "data" / "ddff12" / "official" / "1.0.0").exists()


def test_unknown_config_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="official, dfv_resplit"):
        prepare_dataset("ddff12", tmp_path / "data", manual_dir=tmp_path, config="5_slices")


# IntParamLF = [?, K2, fx, fy]: disparity * depth = K2 / max(fx, fy) * 1e-3 * 521.4052.
CALIBRATION = np.array([[1.0], [0.2], [740.0], [738.0], [0.0]])
EXPECTED_DISP_TIMES_DEPTH = 0.2 / 740.0 * 1e-3 * 521.4052


@pytest.fixture()
def raw_manual_dir(tmp_path):
    rng = np.random.default_rng(1)
    manual = tmp_path / "raw"
    written = {}
    for scene in ("kitchen", "glassroom"):
        for stack_id in ("0001", "0002"):
            stack_dir = manual / "images" / "train" / scene / stack_id
            stack_dir.mkdir(parents=True)
            images = rng.integers(0, 256, (11, 6, 10, 3), dtype=np.uint8)
            for k, image in enumerate(images):
                write_png(stack_dir / f"{k:02d}.png", image)
            depth_mm = rng.integers(500, 7000, (6, 10)).astype(np.uint16)
            depth_mm[2, 3] = 0
            depth_dir = manual / "DepthRegistered" / "train" / scene
            depth_dir.mkdir(parents=True, exist_ok=True)
            write_png(depth_dir / f"DEPTH_{stack_id}.png", depth_mm)
            written[f"{scene}_{stack_id}"] = (images, depth_mm)
    write_mat5(manual / ddff.CALIBRATION_FILE, {"IntParamLF": CALIBRATION})
    return manual, written


def test_dfv_resplit_round_trip(raw_manual_dir, tmp_path):
    manual, written = raw_manual_dir
    prepare_dataset("ddff12", tmp_path / "data", manual_dir=manual, config="dfv_resplit")
    source = tfds.data_source("ddff12/dfv_resplit", data_dir=str(tmp_path / "data"), download=False)
    train, validation = _records(source["train"]), _records(source["validation"])
    assert sorted(train) == ["kitchen_0001", "kitchen_0002"]
    assert sorted(validation) == ["glassroom_0001", "glassroom_0002"]
    record = validation["glassroom_0002"]
    images, depth_mm = written["glassroom_0002"]
    np.testing.assert_array_equal(record["aif"], images[0])
    np.testing.assert_array_equal(record["stack"], images[1:][::-1])
    np.testing.assert_allclose(record["focus_positions"], FILE_ORDER_DISPARITIES[::-1], rtol=1e-6)
    valid = depth_mm > 0
    np.testing.assert_array_equal(record["valid"], valid)
    expected = np.where(valid, EXPECTED_DISP_TIMES_DEPTH / np.maximum(depth_mm, 1) * 1000.0, 0.0)
    np.testing.assert_allclose(record["depth"], expected, rtol=1e-5)
    assert record["depth"][2, 3] == 0


def test_dfv_resplit_lists_every_incomplete_stack(raw_manual_dir, tmp_path):
    manual, _ = raw_manual_dir
    os.remove(manual / "images" / "train" / "kitchen" / "0002" / "05.png")
    os.remove(manual / "DepthRegistered" / "train" / "glassroom" / "DEPTH_0001.png")
    with pytest.raises(ManualDirError) as error:
        prepare_dataset("ddff12", tmp_path / "data", manual_dir=manual, config="dfv_resplit")
    message = str(error.value)
    assert "kitchen" in message and "10 of 11 PNGs" in message
    assert os.path.join("glassroom", "DEPTH_0001.png") in message


def test_calibration_is_read_from_mat_v5_and_v73(tmp_path):
    from fake_files import write_mat73

    write_mat5(tmp_path / "v5.mat", {"IntParamLF": CALIBRATION})
    write_mat73(tmp_path / "v73.mat", {"IntParamLF": CALIBRATION})
    for name in ("v5.mat", "v73.mat"):
        value = ddff.disparity_times_depth_from_calibration(str(tmp_path / name))
        assert value == pytest.approx(EXPECTED_DISP_TIMES_DEPTH, rel=1e-12)
    write_mat5(tmp_path / "short.mat", {"IntParamLF": np.array([1.0, 2.0])})
    with pytest.raises(CorruptFileError, match="short.mat"):
        ddff.disparity_times_depth_from_calibration(str(tmp_path / "short.mat"))
