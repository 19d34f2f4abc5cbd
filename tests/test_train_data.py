"""Training input: augmentation against brute-force references, and the grain pipeline's promises
(deterministic for a seed, checkpointable, per-process shards that reassemble the single-process batch).

Also home of `prepare_tiny_focal`, the tiny array_record dataset the trainer tests read through
`tfds.data_source` (other test files import it from here).
"""

import os

import numpy as np
import pytest

tfds = pytest.importorskip("tensorflow_datasets")

from configs import demo  # noqa: E402
from configs.common import base_config, engine_source, eval_split, train_source  # noqa: E402
from dualfocus_jax import data_features as F  # noqa: E402
from dualfocus_jax import model_inputs  # noqa: E402
from dualfocus_jax.prepared_splits import open_split  # noqa: E402
from dualfocus_jax.training import augment  # noqa: E402
from dualfocus_jax.training.input_pipeline import training_dataset, training_iterator  # noqa: E402
from experiments import data_setup  # noqa: E402

TINY_SIZE = (40, 44)
TINY_SLICES = 5
TINY_SPLITS = {"train": 8, "validation": 2, "test": 2}


def tiny_focal_example(split: str, index: int) -> dict:
    """A 40×44, 5-slice example: a slanted depth in [1, 2] m, slices blurred by their distance from it (a
    weak but real focus cue), the top-left 12×12 corner without ground truth."""
    rng = np.random.default_rng([sorted(TINY_SPLITS).index(split), index])
    height, width = TINY_SIZE
    rows, cols = np.mgrid[0:height, 0:width]
    slope = rng.uniform(-1, 1, 2)
    depth = 1.5 + 0.5 * np.tanh(slope[0] * (rows / height - 0.5) * 2 + slope[1] * (cols / width - 0.5) * 2)
    focus = np.linspace(1.0, 2.0, TINY_SLICES).astype(np.float32)
    texture = rng.uniform(0, 1, (height, width, 3))
    mean = texture.mean(axis=(0, 1))
    weights = np.clip(np.abs(depth[None] - focus[:, None, None]) / 0.5, 0, 1)[..., None]
    stack = (1 - weights) * texture[None] + weights * mean
    valid = np.ones((height, width), bool)
    valid[:12, :12] = False
    return {F.STACK: np.round(stack * 255).astype(np.uint8), F.FOCUS_POSITIONS: focus,
            F.DEPTH: np.where(valid, depth, 0).astype(np.float32), F.VALID: valid, F.ID: f"{split}_{index}"}


class TinyFocal(tfds.core.GeneratorBasedBuilder):
    """Registered as `tiny_focal`; child processes read it from data_dir without this class."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
        # DatasetInfo directly: dataset_info_from_configs looks for files next to a builder *package*.
        return tfds.core.DatasetInfo(
            builder=self, features=F.focal_stack_features(TINY_SLICES, with_aif=False),
            metadata=tfds.core.MetadataDict({F.FOCUS_UNIT_KEY: F.FOCUS_UNIT_METRES}))

    def _split_generators(self, dl_manager):
        return {split: self._generate_examples(split, size) for split, size in TINY_SPLITS.items()}

    def _generate_examples(self, split, size):
        for index in range(size):
            yield f"{split}_{index}", tiny_focal_example(split, index)


def prepare_tiny_focal(data_dir) -> str:
    """Writes `tiny_focal` as array_record under data_dir (once) and returns data_dir."""
    data_dir = os.fspath(data_dir)
    TinyFocal(data_dir=data_dir, file_format="array_record").download_and_prepare()
    return data_dir


def tiny_input_config(data_dir: str, *, batch: int = 2, crop: int = 32, slices: int = 3, sampling="random_sorted"):
    config = base_config()
    config.input.update(data_dir=data_dir, batch_size=batch, crop_size=(crop, crop), num_slices=slices,
                        num_threads=1, prefetch=2)
    config.input.sources.tiny = train_source("tiny_focal", "train", slice_sampling=sampling, min_valid_fraction=0.9)
    return config.input


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return prepare_tiny_focal(tmp_path_factory.mktemp("tfds"))


# ---------------------------------------------------------------- augmentation


def brute_force_valid_share(valid, top, left, crop_h, crop_w):
    return valid[top:top + crop_h, left:left + crop_w].mean()


def test_crop_keeps_the_minimum_valid_share_and_falls_back_to_the_best_candidate():
    valid = np.ones((40, 40), bool)
    valid[:25, :] = False  # only the bottom 15 rows are valid
    for seed in range(20):
        top, left = augment.crop_corner_with_valid_share(valid, (10, 10), 0.8, 50, np.random.default_rng(seed))
        assert brute_force_valid_share(valid, top, left, 10, 10) >= 0.8
    # Impossible threshold: the returned crop is the best of the candidates drawn with the same generator.
    rng_a, rng_b = np.random.default_rng(7), np.random.default_rng(7)
    top, left = augment.crop_corner_with_valid_share(valid, (20, 20), 1.0, 5, rng_a)
    shares = []
    for _ in range(5):
        t, l_ = int(rng_b.integers(0, 21)), int(rng_b.integers(0, 21))
        shares.append(brute_force_valid_share(valid, t, l_, 20, 20))
    assert brute_force_valid_share(valid, top, left, 20, 20) == pytest.approx(max(shares))


def test_slice_indices_are_sorted_subsets_and_linspace_matches_ddff_protocol():
    rng = np.random.default_rng(0)
    draws = {tuple(model_inputs.slice_indices(10, 5, "random_sorted", rng)) for _ in range(30)}
    assert len(draws) > 10
    assert all(list(d) == sorted(set(d)) and len(d) == 5 and max(d) <= 9 for d in draws)
    np.testing.assert_array_equal(model_inputs.slice_indices(10, 5, "linspace"), [0, 2, 4, 7, 9])  # round(0, 2.25, ...)
    with pytest.raises(ValueError, match="exactly 5"):
        model_inputs.slice_indices(10, 5, "all")
    with pytest.raises(ValueError, match="lower num_slices"):
        model_inputs.slice_indices(3, 5, "linspace")


def test_training_example_keeps_stack_depth_and_focus_aligned():
    example = tiny_focal_example("train", 3)
    settings = augment.AugmentSettings(num_slices=3, slice_sampling="random_sorted", crop_hw=(16, 20),
                                       min_valid_fraction=0.0, depth_scale=0.2)
    for seed in range(8):
        out = augment.training_example(example, np.random.default_rng(seed), settings)
        assert out["stack"].shape == (3, 16, 20, 3) and out["stack"].dtype == np.float32
        assert 0.0 <= out["stack"].min() and out["stack"].max() <= 1.0
        # Find where the crop came from (and which flips) by matching the depth map, then check the stack.
        depth = example[F.DEPTH] * np.float32(0.2)
        found = False
        for flip_h in (False, True):
            for flip_v in (False, True):
                d = depth[:, ::-1] if flip_h else depth
                d = d[::-1] if flip_v else d
                s = example[F.STACK][:, :, ::-1] if flip_h else example[F.STACK]
                s = s[:, ::-1] if flip_v else s
                for top in range(d.shape[0] - 15):
                    for left in range(d.shape[1] - 19):
                        if np.array_equal(d[top:top + 16, left:left + 20], out["depth"]):
                            idx = [int(np.argmin(np.abs(example[F.FOCUS_POSITIONS] * 0.2 - f))) for f in out["focus"]]
                            if np.array_equal(s[idx, top:top + 16, left:left + 20] / np.float32(255), out["stack"]):
                                found = True
        assert found
        assert np.all(np.diff(out["focus"]) > 0)


def test_bad_settings_fail_with_a_clear_message():
    with pytest.raises(ValueError, match="slice_sampling"):
        augment.AugmentSettings(num_slices=5, slice_sampling="shuffled")
    with pytest.raises(ValueError, match="larger than the image"):
        augment.crop_corner_with_valid_share(np.ones((8, 8), bool), (16, 16), 0.5, 3, np.random.default_rng(0))


# ---------------------------------------------------------------- pipeline


def test_tfds_source_reads_the_prepared_tiny_dataset(tiny_dir):
    records = open_split("tiny_focal", "train", data_dir=tiny_dir)
    assert len(records) == TINY_SPLITS["train"]
    record = records[0]
    reference = tiny_focal_example("train", int(record[F.ID].decode().split("_")[1]))
    np.testing.assert_array_equal(record[F.STACK], reference[F.STACK])
    with pytest.raises(ValueError, match="prepare_data"):
        open_split("synthetic_focal", "train", data_dir=os.path.join(tiny_dir, "empty"))


def test_a_missing_dataset_is_not_prepared_by_the_library_and_the_message_says_how(tmp_path):
    with pytest.raises(ValueError) as error:
        open_split("synthetic_focal", "test", data_dir=str(tmp_path))
    command = f"run `python -m experiments.prepare_data --dataset=synthetic_focal --data_dir={tmp_path}`"
    assert command in str(error.value)
    with pytest.raises(ValueError, match=r"--dataset=fod500 --manual_dir=<folder with its source files>.*"
                                         r"datasets/fod500/README.md"):
        open_split("fod500", "train", data_dir=str(tmp_path))
    assert os.listdir(tmp_path) == []  # nothing was prepared


def test_entry_points_prepare_the_missing_datasets_that_need_no_manual_files(tmp_path, monkeypatch):
    prepared = []
    monkeypatch.setattr(data_setup, "prepare_dataset",
                        lambda name, root, config=None: prepared.append((name, os.fspath(root), config)))
    config = demo.get_config()
    config.input.data_dir = str(tmp_path)
    config.input.sources.engine = engine_source()  # drawn on the fly: nothing to prepare
    config.evals.fod500 = eval_split("fod500", "test", "fod500")  # needs the user's files: left to prepare_data
    config.evals.tiny = eval_split("tiny_focal", "test", "synthetic_focal")  # not a dataset of datasets/
    assert data_setup.datasets_read(config) == [("synthetic_focal", ""), ("fod500", ""), ("tiny_focal", "")]
    assert data_setup.prepare_missing_embedded(config) == ["synthetic_focal"]
    assert prepared == [("synthetic_focal", str(tmp_path), None)]
    version = tmp_path / "synthetic_focal" / "1.0.0"
    version.mkdir(parents=True)
    (version / "dataset_info.json").write_text("{}")
    assert data_setup.prepare_missing_embedded(config) == []  # prepared already
    config.input.prepare_if_missing = False
    version.joinpath("dataset_info.json").unlink()
    assert data_setup.prepare_missing_embedded(config) == []  # not asked to
    assert len(prepared) == 1


def test_same_seed_same_batches_and_other_seed_differs(tiny_dir):
    config = tiny_input_config(tiny_dir)
    first = [next(it) for it in [training_iterator(config, seed=3)] for _ in range(3)]
    again = training_dataset(config, seed=3)
    other = training_dataset(config, seed=4)
    for index, batch in enumerate(first):
        for key in batch:
            np.testing.assert_array_equal(batch[key], again[index][key])
    assert not np.array_equal(first[0]["stack"], other[0]["stack"])
    assert first[0]["stack"].shape == (2, 3, 32, 32, 3) and first[0]["valid"].mean() >= 0.9


def test_iterator_state_restores_the_position(tiny_dir):
    config = tiny_input_config(tiny_dir)
    iterator = training_iterator(config, seed=0)
    for _ in range(5):
        next(iterator)
    state = iterator.get_state()
    expected = next(iterator)
    fresh = training_iterator(config, seed=0)
    fresh.set_state(state)
    np.testing.assert_array_equal(next(fresh)["depth"], expected["depth"])


def test_process_shards_reassemble_the_single_process_global_batch(tiny_dir):
    config = tiny_input_config(tiny_dir, batch=4)
    single = training_dataset(config, seed=1)
    shards = [training_dataset(config, seed=1, process_index=p, process_count=2) for p in range(2)]
    for step in range(4):  # past one epoch of 8 examples: the reshuffled second epoch must agree too
        joined = np.concatenate([shards[0][step]["stack"], shards[1][step]["stack"]])
        np.testing.assert_array_equal(joined, single[step]["stack"])
    with pytest.raises(ValueError, match="divisible"):
        training_dataset(tiny_input_config(tiny_dir, batch=3), seed=0, process_count=2)


def test_mixed_sources_follow_their_weights_and_depth_scale():
    config = tiny_input_config("", batch=2, slices=5, sampling="all")
    config.sources.scaled = train_source("scaled", "train", weight=3.0, depth_scale=0.2)
    records = [tiny_focal_example("train", i) for i in range(4)]
    dataset = training_dataset(config, seed=0, records_by_source={"tiny": records, "scaled": records})
    focus_max = np.concatenate([dataset[i]["focus"].max(axis=1) for i in range(100)])
    scaled_share = np.mean(np.isclose(focus_max, 0.4))
    assert np.all(np.isclose(focus_max, 0.4) | np.isclose(focus_max, 2.0))
    assert 0.65 < scaled_share < 0.85  # weight 3 : 1


def test_a_source_serves_only_its_slice_counts_and_the_engine_fills_the_rest():
    config = tiny_input_config("", batch=2, crop=32, slices=3)
    config.slice_counts = (3, 5, 7)
    config.sources.tiny.update(slice_counts=(3, 5), min_valid_fraction=0.0)
    config.sources.engine = engine_source(weight=1.0, blur_range_px=(3.0, 12.0), max_layers=4)
    records = [tiny_focal_example("train", i) for i in range(4)]
    dataset = training_dataset(config, seed=3, records_by_source={"tiny": records})
    again = training_dataset(config, seed=3, records_by_source={"tiny": records})
    tiny_seen = {3: 0, 5: 0, 7: 0}
    for step in range(24):
        batch = dataset[step]
        slices = batch["stack"].shape[1]
        np.testing.assert_array_equal(batch["stack"], again[step]["stack"])  # a pure function of (seed, step)
        # a tiny stack's focus is a sorted subset of linspace(1, 2, 5); the engine's are drawn floats
        is_tiny = [np.allclose(f * 4, np.round(f * 4)) and f.min() >= 1 and f.max() <= 2 for f in batch["focus"]]
        tiny_seen[slices] += sum(is_tiny)
    assert tiny_seen[7] == 0  # the 5-slice source never fills a 7-slice batch
    assert tiny_seen[3] + tiny_seen[5] > 0


def test_slice_counts_that_no_source_serves_are_refused():
    config = tiny_input_config("", batch=2, slices=3)
    config.slice_counts = (3, 5, 7)
    config.sources.tiny.slice_counts = (3, 5)
    records = [tiny_focal_example("train", i) for i in range(4)]
    with pytest.raises(ValueError, match="batches of 7 slices have no source"):
        training_dataset(config, seed=0, records_by_source={"tiny": records})
    config.sources.tiny.slice_counts = (3, 9)
    with pytest.raises(ValueError, match="serves slice_counts \\[3, 9\\]"):
        training_dataset(config, seed=0, records_by_source={"tiny": records})
