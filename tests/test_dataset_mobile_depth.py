"""mobile_depth: fake aligned JPEG frames with calibrated.txt files, prepared to array_record and read
back; focus conversion, ordering, varying stack sizes and bad calibrations checked."""

import numpy as np
import pytest

tfds = pytest.importorskip("tensorflow_datasets")

from datasets.common.manual_dir import CorruptFileError, ManualDirError  # noqa: E402
from datasets.common.prepare import prepare_dataset  # noqa: E402
from fake_files import write_jpeg  # noqa: E402


def _write_scene(manual, figure, scene, focal_inches, size, rng):
    from PIL import Image

    folder = manual / "Aligned" / figure / scene
    folder.mkdir(parents=True)
    decoded = []
    for k in range(len(focal_inches)):
        path = folder / f"a{k:02d}.jpg"
        write_jpeg(path, rng.integers(0, 256, (*size, 3), dtype=np.uint8))
        decoded.append(np.asarray(Image.open(path)))
    calibration = manual / "calibration" / scene
    calibration.mkdir(parents=True)
    (calibration / "calibrated.txt").write_text("".join(f"{f} 2.4\n" for f in focal_inches))
    return np.stack(decoded)


def test_scenes_round_trip_with_focus_in_metres(tmp_path):
    rng = np.random.default_rng(0)
    manual = tmp_path / "manual"
    # Calibrations need not be monotonic in frame order: slices are sorted by focal depth.
    keyboard = _write_scene(manual, "Figure5", "keyboard", [10.0, 4.0, 6.5], (12, 20), rng)
    plants = _write_scene(manual, "Figure1", "plants", [3.0, 5.0, 7.0, 9.0, 11.0], (10, 8), rng)
    builder = prepare_dataset("mobile_depth", tmp_path / "data", manual_dir=manual)
    assert builder.info.metadata["focus_unit"] == "m"
    source = tfds.data_source("mobile_depth", data_dir=str(tmp_path / "data"), download=False)
    records = {r["id"].decode(): r for r in (source["test"][i] for i in range(len(source["test"])))}
    assert sorted(records) == ["keyboard", "plants"]
    record = records["keyboard"]
    np.testing.assert_allclose(record["focus_positions"], np.float32([4.0, 6.5, 10.0]) * 0.0254, rtol=1e-6)
    np.testing.assert_array_equal(record["stack"], keyboard[[1, 2, 0]])
    assert record["depth"].shape == (12, 20) and not record["depth"].any() and not record["valid"].any()
    assert records["plants"]["stack"].shape == (5, 10, 8, 3)
    np.testing.assert_array_equal(records["plants"]["stack"], plants)


def test_missing_calibration_and_miscounted_calibration(tmp_path):
    rng = np.random.default_rng(1)
    manual = tmp_path / "manual"
    _write_scene(manual, "Figure5", "bottles", [4.0, 6.0], (6, 6), rng)
    (manual / "calibration" / "bottles" / "calibrated.txt").unlink()
    with pytest.raises(ManualDirError, match="calibration/bottles/calibrated.txt"):
        prepare_dataset("mobile_depth", tmp_path / "data", manual_dir=manual)
    (manual / "calibration" / "bottles" / "calibrated.txt").write_text("4.0 2.4\n6.0 2.4\n8.0 2.4\n")
    with pytest.raises(CorruptFileError, match="3 focal depths for 2 frames"):
        prepare_dataset("mobile_depth", tmp_path / "data", manual_dir=manual)
    (manual / "calibration" / "bottles" / "calibrated.txt").write_text("4.0 2.4\nfocus 2.4\n")
    with pytest.raises(CorruptFileError, match="line 2"):
        prepare_dataset("mobile_depth", tmp_path / "data", manual_dir=manual)
    assert not (tmp_path / "data" / "mobile_depth" / "1.0.0").exists()
