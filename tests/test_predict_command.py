"""`python -m dualfocus_jax.predict` end to end (generated and real stacks) and its errors on bad input.

All network runs share one image shape (120×160, 5 slices), so the model is compiled once per session.
"""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from dualfocus_jax.inference import DEFAULT_CHECKPOINT, CheckpointError, load_exported_checkpoint
from dualfocus_jax.inference.point_cloud import read_ply
from dualfocus_jax.predict import main

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REAL_DESK = os.path.join(REPO, "..", "shared", "data", "real_focal_stacks", "pixel6_desk")
HEIGHT, WIDTH = 120, 160
FOCUS_M = [0.6, 0.9, 1.3, 1.8, 2.4]
NEAR_M, FAR_M = 0.8, 2.0


@pytest.fixture(scope="module")
def generated_stack(tmp_path_factory):
    """A rendered 5-slice stack of a textured scene: the left half at 0.8 m, the right half at 2.0 m.

    Written as PNGs named in file-name order with a focus_distances.txt, like a user's folder.
    """
    import jax.numpy as jnp

    from dualfocus_jax.rendering import NYUV2_CAMERA, render_focal_stack

    rng = np.random.default_rng(0)
    texture = np.kron(rng.random((HEIGHT // 4, WIDTH // 4, 3)), np.ones((4, 4, 1))).astype(np.float32)
    depth = np.where(np.arange(WIDTH)[None, :] < WIDTH // 2, NEAR_M, FAR_M) * np.ones((HEIGHT, 1))
    stack = np.asarray(render_focal_stack(jnp.asarray(texture), jnp.asarray(depth, jnp.float32),
                                          jnp.asarray(FOCUS_M), NYUV2_CAMERA, mode="layered"))
    folder = tmp_path_factory.mktemp("stack")
    for index, image in enumerate(stack):
        Image.fromarray(np.round(np.clip(image, 0, 1) * 255).astype(np.uint8)).save(folder / f"slice_{index:02d}.png")
    (folder / "focus_distances.txt").write_text("\n".join(str(f) for f in FOCUS_M) + "\n")
    return folder


def run(args):
    # The persistent compilation cache is tested on its own (test_predict_install.py); here it would write to ~.
    return main([str(a) for a in args] + ["--nocompilation_cache"])


def test_command_writes_every_output_with_depth_in_the_focus_unit(generated_stack, tmp_path, capsys):
    out = tmp_path / "out"
    assert run(["--stack", generated_stack, "--out", out, "--ply", "--fov_deg", "60"]) == 0
    log = capsys.readouterr().out
    for stage in ("[1/5] loaded 5 slices", "[2/5] aligned", "[3/5] predicted (network)", "[4/5] outputs",
                  "[5/5] wrote"):
        assert stage in log
    for name in ("depth.npy", "uncertainty.npy", "depth.exr", "depth.tif", "depth_16bit.png", "depth.png",
                 "aif.png", "summary.png", "points.ply", "metadata.json"):
        assert (out / name).stat().st_size > 0, name
    depth, uncertainty = np.load(out / "depth.npy"), np.load(out / "uncertainty.npy")
    assert depth.shape == uncertainty.shape == (HEIGHT, WIDTH)
    assert depth.dtype == uncertainty.dtype == np.float32
    assert np.all(depth >= FOCUS_M[0] - 1e-5) and np.all(depth <= FOCUS_M[-1] + 1e-5)
    assert np.all(np.isfinite(uncertainty)) and np.all(uncertainty >= 0)
    # The scene: the left half is nearer than the right half (by the median, borders aside).
    inner = depth[8:-8]
    left, right = np.median(inner[:, 8:WIDTH // 2 - 8]), np.median(inner[:, WIDTH // 2 + 8:-8])
    assert left < right, (left, right)
    assert abs(left - NEAR_M) < 0.35 and abs(right - FAR_M) < 0.6, (left, right)
    points, colours = read_ply(str(out / "points.ply"))
    assert points.shape == (HEIGHT * WIDTH, 3) and colours.shape == (HEIGHT * WIDTH, 3)
    np.testing.assert_allclose(points[:, 2], depth.ravel(), rtol=1e-6)
    assert Image.open(out / "aif.png").size == (WIDTH, HEIGHT)
    # The shipped model weights its slices by their spacing, and says so.
    metadata = json.loads((out / "metadata.json").read_text())
    assert metadata["slice_prior"] == "blur_cells"
    # The defocus refinement (on by default) records its blur model and says in the log what it did.
    fitted = metadata["defocus_refinement"]
    assert set(fitted) == {"applied", "blur_span_px", "sharp_sigma_px", "fit_gain"} and fitted["blur_span_px"] > 0
    assert ("depth refined by the slices' blur" if fitted["applied"] else "defocus refinement not applied") in log


def test_depth_follows_the_unit_of_the_focus_distances(generated_stack, tmp_path):
    """Centimetres instead of metres: the network never sees the values, so depth is exactly 100× larger."""
    metres, centimetres = tmp_path / "m", tmp_path / "cm"
    assert run(["--stack", generated_stack, "--out", metres, "--noalign"]) == 0
    assert run(["--stack", generated_stack, "--out", centimetres, "--noalign", "--unit", "cm",
                "--focus_distances", ",".join(str(100 * f) for f in FOCUS_M)]) == 0
    np.testing.assert_allclose(np.load(centimetres / "depth.npy"), 100 * np.load(metres / "depth.npy"), rtol=1e-4)


@pytest.mark.skipif(not os.path.isdir(REAL_DESK), reason="../shared/data/real_focal_stacks is not available")
def test_command_on_a_real_phone_stack(tmp_path, capsys):
    """The hand-held Pixel 6 stack at 320 px (smaller loses the focus cue: the phone's blur shrinks with the
    image and falls below a pixel; at 160 px the floor gradient is gone)."""
    out = tmp_path / "desk"
    assert run(["--stack", REAL_DESK, "--out", out, "--max_size", "320"]) == 0
    log = capsys.readouterr().out
    assert "focus 0.35, 0.5, 0.9, 1.33, 2.21 m" in log and "aligned to slice 3" in log
    assert "working at 320x241" in log  # 4080×3072 scaled to a 320 px long side
    depth = np.load(out / "depth.npy")
    assert depth.shape == (3072, 4080) and depth.dtype == np.float32  # the outputs are at the photos' grid
    assert Image.open(out / "aif.png").size == (4080, 3072)
    assert np.all((depth >= 0.35 - 1e-5) & (depth <= 2.21 + 1e-5))
    # SOURCES.md: a carpeted floor seen at a low angle, depth grows from the bottom rows upwards.
    bottom, middle = np.median(depth[-390:]), np.median(depth[1340:1720])
    assert bottom + 0.15 < middle, (bottom, middle)


def _copy_stack(source, folder, count=None):
    folder.mkdir()
    names = sorted(n for n in os.listdir(source) if n.endswith(".png"))[:count]
    for name in names:
        shutil.copy(source / name, folder / name)
    return folder


@pytest.mark.parametrize("case, words", [
    ("unreadable", "Cannot read image"),
    ("one_image", "Only one image"),
    ("wrong_length", "4 focus positions"),
    ("non_finite", "Non-finite focus positions"),
])
def test_bad_stack_input_fails_with_a_clear_message(generated_stack, tmp_path, capsys, case, words):
    folder = _copy_stack(generated_stack, tmp_path / "stack", count=1 if case == "one_image" else None)
    args = ["--stack", folder, "--out", tmp_path / "out", "--focus_distances", ",".join(map(str, FOCUS_M))]
    if case == "unreadable":
        (folder / "slice_02.png").write_bytes(b"this is not a PNG")
    elif case == "wrong_length":
        args[-1] = "0.6,0.9,1.3,1.8"
    elif case == "non_finite":
        args[-1] = "0.6,0.9,nan,1.8,2.4"
    elif case == "one_image":
        args = args[:4]
    assert run(args) == 2
    assert words in capsys.readouterr().err
    assert not (tmp_path / "out" / "depth.npy").exists()


def test_a_checkpoint_of_another_model_is_rejected(tmp_path):
    """The shipped parameters under a config claiming the paper-size model: shapes cannot match."""
    other = tmp_path / "paper"
    shutil.copytree(DEFAULT_CHECKPOINT, other)
    stored = json.loads((other / "model_config.json").read_text())
    stored["model_config"] = {"size": "paper", "variant": "dualfocus"}
    (other / "model_config.json").write_text(json.dumps(stored))
    with pytest.raises(CheckpointError, match="do not belong to the model its config describes .paper/dualfocus."):
        load_exported_checkpoint(str(other))


@pytest.mark.parametrize("damage", ["garbage_params", "garbage_config", "not_a_checkpoint"])
def test_a_corrupt_checkpoint_fails_with_a_clear_message(generated_stack, tmp_path, capsys, damage):
    broken = tmp_path / "broken"
    shutil.copytree(DEFAULT_CHECKPOINT, broken)
    if damage == "garbage_params":
        shutil.rmtree(broken / "params")
        (broken / "params").mkdir()
        (broken / "params" / "_METADATA").write_bytes(os.urandom(64))
        (broken / "params" / "junk.bin").write_bytes(os.urandom(256))
        words = "cannot read the parameters"
    elif damage == "garbage_config":
        (broken / "model_config.json").write_bytes(b"\x00{not json")
        words = "is not a valid model config"
    else:
        os.remove(broken / "model_config.json")
        words = "is not an exported DualFocus checkpoint"
    assert run(["--stack", generated_stack, "--out", tmp_path / "out", "--checkpoint", broken]) == 2
    assert words in capsys.readouterr().err
    assert not (tmp_path / "out").exists()  # fails before loading the photos or writing anything


def test_python_dash_m_entry_point_reports_errors_with_exit_status_2(tmp_path):
    result = subprocess.run([sys.executable, "-m", "dualfocus_jax.predict", "--stack", str(tmp_path / "missing"),
                             "--out", str(tmp_path / "out"), "--method", "classical"],
                            cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "Focal-stack folder not found" in result.stderr


def test_flips_with_the_classical_method_is_refused_before_any_work(generated_stack, tmp_path, capsys):
    assert run(["--stack", generated_stack, "--out", tmp_path / "out", "--method", "classical", "--flips"]) == 2
    err = capsys.readouterr().err
    assert "--flips" in err and "--method network" in err
    assert not (tmp_path / "out").exists()
