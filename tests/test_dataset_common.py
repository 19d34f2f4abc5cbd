"""Shared dataset machinery: readers against independent encoders, example assembly, manual-dir errors,
the preparation entry points, and atomic preparation (an interrupted run leaves nothing that looks done)."""

from unittest import mock

import numpy as np
import pytest

tfds = pytest.importorskip("tensorflow_datasets")

import fake_files  # noqa: E402
from datasets.common import file_readers  # noqa: E402
from datasets.common.examples import focal_example  # noqa: E402
from datasets.common.manual_dir import CorruptFileError, ManualDirError, manual_dir_path, raise_if_missing  # noqa: E402
from datasets.common.prepare import (  # noqa: E402
    DATASET_NAMES,
    builder_class,
    config_names,
    needs_manual_dir,
    prepare_dataset,
)
from dualfocus_jax import data_features as F  # noqa: E402
from dualfocus_jax.prepared_splits import MANUAL_DATASETS  # noqa: E402


def test_rgb_reader_decodes_tiff_png_and_grey(tmp_path):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)
    fake_files.write_tiff_rgb(tmp_path / "a.tif", image)
    fake_files.write_png(tmp_path / "a.png", image)
    np.testing.assert_array_equal(file_readers.read_rgb_u8(tmp_path / "a.tif"), image)
    np.testing.assert_array_equal(file_readers.read_rgb_u8(tmp_path / "a.png"), image)
    fake_files.write_png(tmp_path / "grey.png", image[..., 0])
    np.testing.assert_array_equal(file_readers.read_rgb_u8(tmp_path / "grey.png"), np.repeat(image[..., :1], 3, -1))


def test_exr_reader_reads_half_and_float_channels(tmp_path):
    depth = np.linspace(0.1, 1.5, 20).reshape(4, 5).astype(np.float32)
    fake_files.write_exr_depth(tmp_path / "h.exr", depth, half=True)
    fake_files.write_exr_depth(tmp_path / "f.exr", depth, half=False)
    half_precision = depth.astype(np.float16).astype(np.float32)
    np.testing.assert_array_equal(file_readers.read_exr_channel(tmp_path / "h.exr"), half_precision)
    np.testing.assert_array_equal(file_readers.read_exr_channel(tmp_path / "f.exr"), depth)
    with pytest.raises(CorruptFileError, match="no channel 'Z'"):
        file_readers.read_exr_channel(tmp_path / "f.exr", "Z")


@pytest.mark.parametrize("reader, name", [
    (file_readers.read_rgb_u8, "bad.png"),
    (file_readers.read_rgb_u8, "bad.tif"),
    (file_readers.read_u16_png, "bad.png"),
    (file_readers.read_exr_channel, "bad.exr"),
    (file_readers.read_pfm, "bad.pfm"),
])
def test_corrupt_files_are_named(tmp_path, reader, name):
    (tmp_path / name).write_bytes(b"\x00garbage that is no image")
    with pytest.raises(CorruptFileError, match=name):
        reader(tmp_path / name)


def test_u16_reader_rejects_an_8_bit_png_and_truncated_pfm_is_reported(tmp_path):
    fake_files.write_png(tmp_path / "eight.png", np.zeros((3, 3), np.uint8))
    with pytest.raises(CorruptFileError, match="not single-channel 16-bit"):
        file_readers.read_u16_png(tmp_path / "eight.png")
    (tmp_path / "short.pfm").write_bytes(b"Pf\n4 4\n-1.0\n" + b"\x00" * 20)
    with pytest.raises(CorruptFileError, match="64 expected"):
        file_readers.read_pfm(tmp_path / "short.pfm")


def test_mat_reader_returns_matlab_shapes_for_v5_and_v73(tmp_path):
    array = np.arange(6.0).reshape(2, 3)
    fake_files.write_mat5(tmp_path / "v5.mat", {"x": array})
    fake_files.write_mat73(tmp_path / "v73.mat", {"x": array})
    for name in ("v5.mat", "v73.mat"):
        np.testing.assert_array_equal(file_readers.read_mat_arrays(tmp_path / name, ("x",))["x"], array)
    assert (tmp_path / "v73.mat").read_bytes()[:10] == b"MATLAB 7.3"
    with pytest.raises(CorruptFileError, match="lacks"):
        file_readers.read_mat_arrays(tmp_path / "v5.mat", ("y",))


def test_focal_example_sorts_slices_converts_and_masks():
    stack = np.stack([np.full((2, 3, 3), v, np.float32) for v in (0.2, 1.0, 0.0)])
    depth = np.array([[1.0, np.nan, 2.0], [0.0, 3.0, 4.0]], np.float32)
    example = focal_example(stack, [2.0, 3.0, 1.0], depth, None, "x")
    np.testing.assert_array_equal(example[F.FOCUS_POSITIONS], np.float32([1.0, 2.0, 3.0]))
    np.testing.assert_array_equal(example[F.STACK][:, 0, 0, 0], [0, 51, 255])
    np.testing.assert_array_equal(example[F.VALID], [[True, False, True], [False, True, True]])
    np.testing.assert_array_equal(example[F.DEPTH], [[1, 0, 2], [0, 3, 4]])
    assert example[F.DEPTH].dtype == np.float32 and example[F.STACK].dtype == np.uint8
    with pytest.raises(ValueError, match="distinct"):
        focal_example(stack, [1.0, 1.0, 2.0], depth, None, "x")
    with pytest.raises(ValueError, match="depth is"):
        focal_example(stack, [1.0, 2.0, 3.0], depth[:1], None, "x")


def test_manual_dir_errors_name_the_problem(tmp_path):
    with pytest.raises(ManualDirError, match="none was given"):
        manual_dir_path(None, "fod500", "  put files here")
    with pytest.raises(ManualDirError, match="put files here"):
        manual_dir_path(tmp_path / "absent", "fod500", "  put files here")
    missing = [f"scene_{i}.png" for i in range(25)]
    with pytest.raises(ManualDirError, match=r"(?s)25 expected file\(s\) missing.*scene_19.png.*and 5 more") as error:
        raise_if_missing(missing, tmp_path, "fod500", "instructions")
    assert "scene_20.png" not in str(error.value)


def test_every_builder_is_importable_with_instructions_and_a_readme():
    import os

    for name in DATASET_NAMES:
        cls = builder_class(name)
        folder = os.path.dirname(os.path.abspath(__import__(cls.__module__, fromlist=["x"]).__file__))
        for required in ("README.md", "CITATIONS.bib", "__init__.py"):
            assert os.path.isfile(os.path.join(folder, required)), (name, required)
        # The embedded datasets (rendered from data that ships with the code) need no manual files.
        assert (name in ("synthetic_focal", "focal_engine")) != bool(getattr(cls, "MANUAL_DOWNLOAD_INSTRUCTIONS", None))
    assert config_names("nyuv2_focal") == ("5_slices", "10_slices")
    assert config_names("ddff12") == ("official", "dfv_resplit")


def test_the_library_names_the_datasets_that_need_manual_files_as_the_builders_do():
    # The training library imports nothing from datasets/, so it keeps its own list for its error message.
    assert set(MANUAL_DATASETS) == {name for name in DATASET_NAMES if needs_manual_dir(name)}


def test_prepare_rejects_unknown_names_configs_and_missing_manual_dir(tmp_path):
    with pytest.raises(ValueError, match="Unknown dataset 'nyu'"):
        prepare_dataset("nyu", tmp_path)
    with pytest.raises(ValueError, match="has no configs"):
        prepare_dataset("fod500", tmp_path, manual_dir=tmp_path, config="official")
    with pytest.raises(ManualDirError, match="--manual_dir"):
        prepare_dataset("fod500", tmp_path / "data")


def test_feature_spec_rejects_bad_arguments():
    with pytest.raises(ValueError, match="num_slices"):
        F.focal_stack_features(1, with_aif=False)
    with pytest.raises(ValueError, match="with_has_aif"):
        F.focal_stack_features(5, with_aif=False, with_has_aif=True)


def test_interrupted_preparation_leaves_nothing_that_looks_prepared(tmp_path):
    from datasets.synthetic_focal import synthetic_focal_dataset_builder as synthetic

    real_examples = synthetic.procedural_examples
    calls = []

    def interrupted_after_first_batch(split, indices, camera):
        calls.append(split)
        if len(calls) > 1:
            raise RuntimeError("simulated interruption")
        yield from real_examples(split, indices, camera)

    data_dir = tmp_path / "data"
    with mock.patch.object(synthetic.Builder, "SPLIT_SIZES", {"train": 9, "test": 1}), \
            mock.patch.object(synthetic, "procedural_examples", interrupted_after_first_batch):
        with pytest.raises(RuntimeError, match="simulated interruption"):
            prepare_dataset("synthetic_focal", data_dir)
    assert calls == ["train", "train"]  # 8 examples were generated before the interruption
    names = {p.name for p in data_dir.rglob("*")}
    assert "1.0.0" not in names and "dataset_info.json" not in names
    assert not any(name.endswith(".array_record-00000-of-00001") for name in names)
    # No prepared version: tfds falls back to its default TFRECORD format, which has no random-access source.
    with pytest.raises(NotImplementedError, match="Random access data source"):
        tfds.data_source("synthetic_focal", data_dir=str(data_dir), download=False)
