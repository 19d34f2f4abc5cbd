"""experiments/evaluate_generalisation.py end to end in --quick mode (the network replaced by a stand-in, so
no network compiles: its path is `predict_depth`, tested elsewhere), and its pieces: the classical baseline
as the predictor runs it, slice subsets, checkpoint arguments, blur-span groups."""

import csv
import os

import numpy as np
import pytest

from datasets.focal_engine.focal_engine_dataset_builder import engine_test_stack
from dualfocus_jax.rendering.thin_lens import ThinLensCamera
from experiments import evaluate_generalisation as evaluation

CANDIDATE = "dualfocus_jax/pretrained/small_engine_candidate"


def _write_real_stack(folder):
    from PIL import Image

    os.makedirs(folder)
    rng = np.random.default_rng(0)
    texture = rng.random((40, 40, 3))
    for index in range(3):
        blurred = texture if index == 1 else (texture + np.roll(texture, index + 1, axis=0)) / 2
        Image.fromarray((blurred * 255).astype(np.uint8)).save(os.path.join(folder, f"image_{index}.png"))
    with open(os.path.join(folder, "focus_distances.txt"), "w") as handle:
        handle.write("0.5\n0.7\n1.0\n")


def test_quick_run_writes_every_table_and_the_picture(tmp_path, monkeypatch):
    calls = []

    def stand_in(method, images, focus, focus_unit="distance"):
        calls.append((method.name, images.shape))
        return np.full(images.shape[1:3], float(np.median(focus)), np.float32)

    monkeypatch.setattr(evaluation, "network_depth", stand_in)
    _write_real_stack(str(tmp_path / "real" / "toy"))
    out = tmp_path / "out"
    code = evaluation.main(["--quick", "--checkpoint", f"cand={CANDIDATE}", "--out", str(out),
                            "--data_dir", str(tmp_path / "tfds"), "--real_dir", str(tmp_path / "real")])
    assert code == 0
    assert {"generalisation.md", "summary.csv", "per_image.csv", "real_stacks.csv", "real_stacks.png"} <= set(
        os.listdir(out))
    assert os.path.getsize(out / "real_stacks.png") < 400_000
    text = (out / "generalisation.md").read_text()
    for heading in ("RMSE (m) per slice count", "per camera family", "per scene family", "per blur span", "Regions",
                    "5-slice stacks predicted from evenly chosen slices", "Motorcycle", "Real phone stacks",
                    "rendered by the layered protocol renderer",
                    "rendered by the per-pixel Gaussian protocol renderer"):
        assert heading in text
    assert "cand, 3 of 5 slices" in text
    with open(out / "per_image.csv") as handle:
        rows = list(csv.DictReader(handle))
    methods = {row["method"] for row in rows}
    assert {"cand", "classical (raw)", "classical (refined)", "cand, 3 of 5 slices"} <= methods
    # With the defocus refinement (the default) the first network is also scored without it.
    assert "cand" + evaluation.NETWORK_ONLY_SUFFIX in methods
    assert evaluation.REFINED_NOTE in text
    assert {row["dataset"] for row in rows} == {"engine", evaluation.PROTOCOL_RENDERED, evaluation.PROTOCOL_GAUSSIAN,
                                                "motorcycle"}
    assert {row["region"] for row in rows} == set(evaluation.REGIONS)
    assert all(np.isfinite(float(row["rmse"])) for row in rows if row["region"] == "all")
    # The network saw the engine stacks (3 and 5 slices, and 3 of the 5), the motorcycle and the real stack.
    assert sorted({shape[0] for _, shape in calls}) == [3, 5]


def test_classical_refined_is_what_the_predictor_runs():
    from dualfocus_jax.inference import predict_depth

    rng = np.random.default_rng(1)
    stack = rng.random((3, 32, 32, 3)).astype(np.float32)
    focus = np.array([0.5, 0.8, 1.4])
    ours = evaluation.classical_depth(stack, focus, refine=True)
    np.testing.assert_allclose(ours, predict_depth(stack, focus, method="classical").depth_HW, rtol=1e-5, atol=1e-6)
    raw = evaluation.classical_depth(stack, focus, refine=False)
    assert raw.shape == (32, 32) and focus.min() - 1e-6 <= raw.min() and raw.max() <= focus.max() + 1e-6


def test_evenly_chosen_slices_keep_both_ends():
    np.testing.assert_array_equal(evaluation.evenly_chosen_slices(16, 7), [0, 2, 5, 8, 10, 12, 15])
    np.testing.assert_array_equal(evaluation.evenly_chosen_slices(16, 10)[[0, -1]], [0, 15])
    assert len(evaluation.evenly_chosen_slices(16, 10)) == 10


def test_checkpoint_arguments(tmp_path):
    assert evaluation.parse_checkpoint_spec("a=b/c") == ("a", "b/c")
    assert evaluation.parse_checkpoint_spec("runs/x/") == ("x", "runs/x/")
    with pytest.raises(ValueError, match="NAME=FOLDER"):
        evaluation.parse_checkpoint_spec("=b")
    assert evaluation.main(["--checkpoint", f"x={tmp_path}", "--out", str(tmp_path / "o")]) == 1


def test_blur_span_of_an_engine_stack_is_its_thin_lens_coc_difference():
    _, record = engine_test_stack(5, 4, (32, 32))
    camera = ThinLensCamera(focal_length_m=float(record["focal_length_mm"]) * 1e-3,
                            f_number=float(record["f_number"]), pixel_size_m=float(record["pixel_size_um"]) * 1e-6)
    # Independent reference: the CoC (pixels) of the nearest surface with the lens focused at infinity, minus
    # the farthest's, = A·F/p · (1/near − 1/far) in the far-focus limit.
    aperture = camera.focal_length_m / camera.f_number
    coc = [aperture * camera.focal_length_m / float(record[key]) / camera.pixel_size_m
           for key in ("scene_near_m", "scene_far_m")]
    assert evaluation.scene_blur_span_px(record) == pytest.approx(coc[0] - coc[1], rel=1e-4)
    # The engine draws the span within EngineSettings.blur_range_px (3–40 px by default) or the camera's reach.
    assert 0 < evaluation.scene_blur_span_px(record) <= 40.0 * 1.001


def test_blur_span_buckets_cover_every_span():
    assert [evaluation.blur_span_bucket(v) for v in (0.5, 5.99, 6.0, 12.0, 23.9, 24.0, 400.0)] == [
        "< 6 px", "< 6 px", "6-12 px", "12-24 px", "12-24 px", ">= 24 px", ">= 24 px"]


@pytest.mark.parametrize("mode", ["layered", "gaussian"])
def test_protocol_rendered_scenes_are_the_engine_scenes_from_the_protocol_renderer(mode):
    sizes = evaluation.QUICK
    engine = list(evaluation.engine_scenes(sizes, None))
    protocol = list(evaluation.protocol_rendered_scenes(sizes, None, mode))
    assert [scene.example_id for scene in protocol] == [scene.example_id for scene in engine]
    for ours, theirs in zip(protocol, engine, strict=True):
        assert ours.dataset == evaluation.PROTOCOL_LABELS[mode] and ours.groups == theirs.groups
        np.testing.assert_array_equal(ours.depth, theirs.depth)
        np.testing.assert_array_equal(ours.focus, theirs.focus)
        assert ours.stack.shape == theirs.stack.shape and ours.stack.dtype == np.float32
        np.testing.assert_allclose(ours.stack * 255, np.round(ours.stack * 255), atol=1e-3)  # 8-bit, as captured
        assert np.abs(ours.stack - theirs.stack).mean() > 1e-3  # another renderer, no noise or JPEG
    if mode == "gaussian":
        # The protocol's 7 x 7 window: no pixel of a slice moves further than 3 px, so a slice differs from the
        # all-in-focus image only within 3 px of where the image varies (here: its difference from a 7 x 7 max
        # and min filter bounds every slice).
        from scipy import ndimage

        for scene, record in zip(protocol, evaluation._engine_records(sizes, None), strict=True):
            aif = np.asarray(record[1]["aif"], np.float32) / 255.0
            upper = ndimage.maximum_filter(aif, size=(7, 7, 1), mode="nearest")
            lower = ndimage.minimum_filter(aif, size=(7, 7, 1), mode="nearest")
            assert np.all(scene.stack <= upper[None] + 1 / 255 + 1e-6)
            assert np.all(scene.stack >= lower[None] - 1 / 255 - 1e-6)


def test_the_protocol_section_has_its_tables_without_the_engine_split():
    """--skip engine: the protocol-rendered section still lists every slice count it scored."""
    records = [{"dataset": evaluation.PROTOCOL_RENDERED, "method": method, "region": "all", "slices": count,
                "rmse": value, "abs_rel": value, "rmse_range": value, "delta1": 1.0, "mae": value, "pixels": 10.0,
                "seconds": 0.1}
               for count in (3, 5) for method, value in (("cand", 0.1), (evaluation.CLASSICAL_REFINED, 0.2))]
    methods = [evaluation.Method("cand", "network", source="x"),
               evaluation.Method(evaluation.CLASSICAL_REFINED, "classical")]
    text = evaluation.report_markdown(records, [], methods, evaluation.Sizes(), "cmd", 1.0)
    section = text.split("rendered by the layered protocol renderer")[1]
    assert "| method | 3 | 5 | all |" in section
    assert "| cand | rmse | 0.50 ✓ | 0.50 ✓ |" in section


def test_network_depth_outside_the_command_takes_flips_and_the_refinement_from_the_method():
    # The ablation scores through network_depth without this command's flags ever being parsed.
    import dataclasses

    from dualfocus_jax.inference import load_exported_checkpoint, predict_depth

    params, config = load_exported_checkpoint(CANDIDATE)
    method = evaluation.Method("cand", "network", params, config)
    rng = np.random.default_rng(2)
    stack = rng.random((3, 32, 32, 3)).astype(np.float32)
    focus = np.array([0.5, 0.8, 1.4])
    for flips, refine in ((False, False), (True, False), (False, True)):
        depth = evaluation.network_depth(dataclasses.replace(method, flips=flips, defocus_refinement=refine),
                                         stack, focus)
        expected = predict_depth(stack, focus, method="network", params=params, config=config, flips=flips,
                                 defocus_refinement=refine).depth_HW
        np.testing.assert_allclose(depth, expected, rtol=1e-6)
