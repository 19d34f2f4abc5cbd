"""`dualfocus-predict` on every focus unit and source, its output files, and its errors on bad input.

Fast: the classical method on 4-slice stacks of 96×128 photos predicted at --max_size 64 (48×64, one compiled
shape for the whole module), so each output is upsampled to the photos' pixel grid, which the tests check.
"""

import json
import os

import numpy as np
import OpenEXR
import pytest
import tifffile
from PIL import Image, ImageFilter

from dualfocus_jax.inference.output_files import read_png16
from dualfocus_jax.inference.point_cloud import read_ply
from dualfocus_jax.predict import main

PHOTO_HW = (96, 128)
WORK = ["--max_size", "64"]  # working grid 48×64; outputs at 96×128
NUM_SLICES = 4
NEAR_SHARP, FAR_SHARP = 1, 2  # slice sharp on the left half, on the right half (file-name order)


def _slices(seed=0):
    """4 uint8 photos: a block texture, the left half sharpest in slice 1 and the right half in slice 2."""
    height, width = PHOTO_HW
    rng = np.random.default_rng(seed)
    texture = Image.fromarray((np.kron(rng.random((height // 4, width // 4, 3)), np.ones((4, 4, 1))) * 255)
                              .astype(np.uint8))
    out = []
    for index in range(NUM_SLICES):
        left = np.asarray(texture.filter(ImageFilter.GaussianBlur(1.5 * abs(index - NEAR_SHARP))))
        right = np.asarray(texture.filter(ImageFilter.GaussianBlur(1.5 * abs(index - FAR_SHARP))))
        out.append(np.concatenate([left[:, : width // 2], right[:, width // 2:]], axis=1))
    return out


def write_stack(folder, *, extension="png", exif_distances=None, seed=0):
    folder.mkdir(parents=True, exist_ok=True)
    for index, pixels in enumerate(_slices(seed)):
        image = Image.fromarray(pixels)
        path = folder / f"photo_{index:02d}.{extension}"
        if exif_distances is not None:
            exif = Image.Exif()
            exif.get_ifd(0x8769)[0x9206] = exif_distances[index]  # Exif sub-IFD, SubjectDistance (metres)
            image.save(path, exif=exif, quality=95)
        else:
            image.save(path)
    return folder


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """A folder of 4 PNGs with no focus values in it (values come from each test's arguments)."""
    return write_stack(tmp_path_factory.mktemp("stack") / "photos")


def predict(*args):
    return main([str(a) for a in args] + ["--method", "classical", "--nocompilation_cache"])


def read_exr(path):
    with OpenEXR.File(str(path)) as handle:
        header = dict(handle.header())
        return np.array(handle.channels()["Y"].pixels), header


def check_outputs(out, unit):
    """Every depth/uncertainty file at the photos' grid and equal to depth.npy / uncertainty.npy; returns
    (depth, metadata)."""
    metadata = json.loads((out / "metadata.json").read_text())
    assert metadata["grid"]["output_hw"] == list(PHOTO_HW) and metadata["grid"]["working_hw"] == [48, 64]
    for name in ("depth", "uncertainty"):
        reference = np.load(out / f"{name}.npy")
        assert reference.shape == PHOTO_HW and reference.dtype == np.float32
        exr, header = read_exr(out / f"{name}.exr")
        assert exr.dtype == np.float32 and exr.shape == PHOTO_HW
        np.testing.assert_array_equal(exr, reference)
        assert header["dualfocus_unit"] == unit and header["dualfocus_quantity"] == name
        with Image.open(out / f"{name}.tif") as tif:
            assert tif.mode == "F" and tif.size == PHOTO_HW[::-1]
            np.testing.assert_array_equal(np.asarray(tif), reference)
            assert tif.tag_v2[270].startswith(f"{name} ({unit})")
        with Image.open(out / f"{name}_16bit.png") as png:
            assert png.mode.startswith("I;16") and png.size == PHOTO_HW[::-1]
            assert png.text["dualfocus_unit"] == unit
        scale = metadata["png16"][f"{name}_16bit.png"]
        assert scale["unit"] == unit and scale["scale"] > 0
        decoded = read_png16(out / f"{name}_16bit.png")
        np.testing.assert_allclose(decoded, reference, atol=scale["scale"] / 2 + 1e-6 * np.abs(reference).max())
        by_hand = scale["offset"] + scale["scale"] * np.asarray(Image.open(out / f"{name}_16bit.png"), np.float64)
        np.testing.assert_allclose(by_hand, decoded)
    with Image.open(out / "aif.png") as aif:
        assert aif.size == PHOTO_HW[::-1] and aif.mode == "RGB"
    for name in ("depth.png", "summary.png"):
        Image.open(out / name).verify()
    assert set(metadata["files"]) == {n for n in os.listdir(out) if not n.startswith(".")}
    return np.load(out / "depth.npy"), metadata


def halves(depth):
    """Median depth of the left and the right half (borders aside)."""
    height, width = depth.shape
    inner = depth[8:-8]
    return np.median(inner[:, 8: width // 2 - 8]), np.median(inner[:, width // 2 + 8: -8])


def test_metre_stack(stack, tmp_path, capsys):
    out = tmp_path / "out"
    focus = [0.5, 0.8, 1.2, 2.0]
    assert predict("--stack", stack, "--out", out, *WORK, "--focus_distances", ",".join(map(str, focus)), "--ply") == 0
    log = capsys.readouterr().out
    assert "focus 0.5, 0.8, 1.2, 2 m from the focus positions given" in log
    depth, metadata = check_outputs(out, "m")
    assert metadata["depth"]["focus_unit"] == "distance" and not metadata["depth"]["relative"]
    assert metadata["method"] == "classical" and metadata["timings_s"]["total"] > 0
    assert [p["value"] for p in metadata["focus_positions"]["near_to_far"]] == focus
    assert np.all((depth >= 0.5 - 1e-5) & (depth <= 2.0 + 1e-5))
    left, right = halves(depth)
    assert left < right and abs(left - 0.8) < 0.25 and abs(right - 1.2) < 0.25, (left, right)
    points, _ = read_ply(str(out / "points.ply"))
    assert metadata["point_cloud"]["unit"] == "m" and points.shape == (48 * 64, 3)


def test_disparity_stack_with_negative_values(stack, tmp_path, capsys):
    """Larger disparity = nearer: slice 1 (sharp on the left) is at +0.5, slice 2 at -0.5."""
    out = tmp_path / "out"
    focus = [1.5, 0.5, -0.5, -1.5]  # file-name order: near to far
    assert predict("--stack", stack, "--out", out, *WORK, "--focus_unit", "disparity", "--ply",
                   f"--focus_distances={','.join(map(str, focus))}") == 0
    log = capsys.readouterr().out
    assert "no point cloud: disparity becomes distance only with the camera's baseline" in log
    assert " m " not in log.split("[1/5]")[1].split("\n")[0]  # no metres said for disparities
    depth, metadata = check_outputs(out, "disparity")
    assert metadata["depth"]["nearer_is"] == "larger"
    assert metadata["point_cloud"]["file"] is None and "baseline" in metadata["point_cloud"]["why"]
    assert not (out / "points.ply").exists()
    assert np.all((depth >= -1.5 - 1e-5) & (depth <= 1.5 + 1e-5))
    left, right = halves(depth)
    assert left > right and abs(left - 0.5) < 0.4 and abs(right + 0.5) < 0.4, (left, right)
    assert metadata["png16"]["depth_16bit.png"]["offset"] == -1.5


def test_diopter_stack_gives_a_point_cloud_in_metres(stack, tmp_path):
    out = tmp_path / "out"
    assert predict("--stack", stack, "--out", out, *WORK, "--focus_distances", "2D,1.25D,0.8D,0.5D", "--ply") == 0
    depth, metadata = check_outputs(out, "D")
    assert metadata["depth"]["focus_unit"] == "diopter" and metadata["focus_positions"]["unit"] == "D"
    left, right = halves(depth)
    assert left > right, (left, right)  # more diopters = nearer
    points, _ = read_ply(str(out / "points.ply"))
    assert metadata["point_cloud"]["unit"] == "m"
    assert np.all((points[:, 2] >= 0.5 - 1e-3) & (points[:, 2] <= 2.0 + 1e-3))  # 1/diopter, metres


def test_order_only_stack_gives_relative_depth_said_in_every_output(stack, tmp_path, capsys):
    out = tmp_path / "out"
    assert predict("--stack", stack, "--out", out, *WORK, "--focus_order", "near_to_far") == 0
    log = capsys.readouterr().out
    assert "order only" in log and "RELATIVE depth in slice units" in log
    depth, metadata = check_outputs(out, "slice")
    assert metadata["depth"]["relative"] is True and "RELATIVE depth in slice units" in metadata["depth"]["meaning"]
    assert metadata["focus_positions"]["origin"] == "the file-name order (near_to_far)"
    assert read_exr(out / "depth.exr")[1]["dualfocus_meaning"].startswith("focus known by order only: RELATIVE")
    assert "RELATIVE depth" in Image.open(out / "depth_16bit.png").text["dualfocus_meaning"]
    assert "RELATIVE depth" in Image.open(out / "depth.tif").tag_v2[270]
    assert np.all((depth >= -1e-5) & (depth <= NUM_SLICES - 1 + 1e-5))
    left, right = halves(depth)
    assert abs(left - NEAR_SHARP) < 0.5 and abs(right - FAR_SHARP) < 0.5, (left, right)
    # far_to_near: the same files, the order reversed.
    reverse = tmp_path / "reverse"
    assert predict("--stack", stack, "--out", reverse, *WORK, "--focus_order", "far_to_near") == 0
    left, right = halves(np.load(reverse / "depth.npy"))
    assert abs(left - (NUM_SLICES - 1 - NEAR_SHARP)) < 0.5 and abs(right - (NUM_SLICES - 1 - FAR_SHARP)) < 0.5


def test_focus_distances_from_exif_written_by_pillow(tmp_path, capsys):
    photos = write_stack(tmp_path / "jpegs", extension="jpg", exif_distances=[0.4, 0.7, 1.1, 1.6])
    out = tmp_path / "out"
    assert predict("--stack", photos, "--out", out, *WORK) == 0
    assert "focus 0.4, 0.7, 1.1, 1.6 m from the photos' metadata (EXIF SubjectDistance" in capsys.readouterr().out
    depth, metadata = check_outputs(out, "m")
    assert metadata["focus_positions"]["origin"].startswith("the photos' metadata")
    left, right = halves(depth)
    assert left < right and abs(left - 0.7) < 0.25, (left, right)


def test_float_rgb_tiff_stack_loads(tmp_path):
    photos = tmp_path / "tiffs"
    photos.mkdir()
    for index, pixels in enumerate(_slices()):
        tifffile.imwrite(photos / f"render_{index}.tif", pixels.astype(np.float32) / 255.0)  # Pillow cannot
    out = tmp_path / "out"
    assert predict("--stack", photos, "--out", out, *WORK, "--focus_distances", "1,2,3,4") == 0
    depth, _ = check_outputs(out, "m")
    assert halves(depth)[0] < halves(depth)[1]


def test_photos_beyond_pillows_size_limit(stack, tmp_path, capsys, monkeypatch):
    """At full resolution: a clear error naming --max_size, before anything is written. At a working size
    (the default) the same photos are predicted, the outputs at their own pixel grid."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 2000)  # 96×128 = 12288 pixels: beyond twice the limit
    out = tmp_path / "full"
    assert predict("--stack", stack, "--out", out, "--full_resolution", "--focus_distances", "1,2,3,4") == 2
    error = capsys.readouterr().err
    assert "larger than Pillow's safety limit" in error and "--max_size" in error
    assert not out.exists()
    out = tmp_path / "working"
    assert predict("--stack", stack, "--out", out, *WORK, "--focus_distances", "1,2,3,4") == 0
    assert Image.MAX_IMAGE_PIXELS == 2000  # the limit is restored after reading
    monkeypatch.undo()  # the test's own checks open the (large) outputs
    check_outputs(out, "m")


def test_exif_of_photos_beyond_pillows_size_limit_is_read(tmp_path, monkeypatch):
    from dualfocus_jax.focal_stack import read_metadata_focus_distance

    photos = write_stack(tmp_path / "jpegs", extension="jpg", exif_distances=[0.4, 0.7, 1.1, 1.6])
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 2000)
    assert read_metadata_focus_distance(str(photos / "photo_02.jpg")) == pytest.approx(1.1)


# Bad input: one clear message, exit status 2, and nothing slow ran (the stack was never decoded).

@pytest.fixture
def no_heavy_compute(monkeypatch):
    """Fails the test if the photos are decoded or a prediction starts."""
    import dualfocus_jax.focal_stack as focal_stack
    import dualfocus_jax.inference.pipeline as pipeline

    def forbidden(*args, **kwargs):
        raise AssertionError("heavy compute started before the input was checked")

    monkeypatch.setattr(focal_stack, "_read_image", forbidden)
    monkeypatch.setattr(pipeline, "predict_depth", forbidden)
    monkeypatch.setattr(pipeline, "align_focal_stack", forbidden)


def _damaged_exif_stack(folder):
    write_stack(folder, extension="jpg", exif_distances=[0.4, 0.7, 1.1, 1.6])
    pixels = np.asarray(Image.open(folder / "photo_01.jpg"))
    # An EXIF block whose first IFD has one entry pointing past the end: Pillow parses it to nothing.
    Image.fromarray(pixels).save(folder / "photo_01.jpg", exif=b"Exif\x00\x00MM\x00*\x00\x00\x00\x08\xff\xff\x00\x01xx",
                                 quality=95)
    return folder


@pytest.mark.parametrize("case, words", [
    ("damaged_exif", "the EXIF block of"),
    ("mixed_suffixes", "Mixed units in --focus_distances (cm, m)"),
    ("suffix_and_focus_unit", "Mixed units: the focus values (the focus positions given) are distances (m), but "
                              "--focus_unit is diopter"),
    ("suffix_and_unit", "are in cm, but --unit is m"),
    ("order_and_values", "--focus_order is for stacks without focus values, but --focus_distances gives values"),
    ("order_and_file", "focus_distances.txt in"),
    ("order_and_focus_unit", "--focus_unit disparity needs focus values"),
    ("disparity_in_metres", "--unit m is a length, but disparities are not distances"),
    ("negative_distances", "if they are disparities pass --focus_unit disparity"),
    ("out_is_a_file", "is a file, not a folder"),
    ("out_under_a_file", "cannot be created"),
    ("out_not_writable", "is not writable"),
    ("out_is_the_stack", "is the --stack folder"),
])
def test_bad_input_fails_with_one_clear_message_before_heavy_compute(stack, tmp_path, capsys, no_heavy_compute,
                                                                      case, words):
    folder, out = stack, tmp_path / "out"
    extra = ["--focus_distances", "1,2,3,4"]
    if case == "damaged_exif":
        folder, extra = _damaged_exif_stack(tmp_path / "jpegs"), []
    elif case == "mixed_suffixes":
        extra = ["--focus_distances", "50cm,0.8m,1.2m,2m"]
    elif case == "suffix_and_focus_unit":
        extra = ["--focus_distances", "0.5m,0.8m,1.2m,2m", "--focus_unit", "diopter"]
    elif case == "suffix_and_unit":
        extra = ["--focus_distances", "50cm,80cm,120cm,200cm", "--unit", "m"]
    elif case == "order_and_values":
        extra += ["--focus_order", "near_to_far"]
    elif case == "order_and_file":
        folder = tmp_path / "with_file"
        folder.mkdir()
        for name in os.listdir(stack):
            os.symlink(stack / name, folder / name)
        (folder / "focus_distances.txt").write_text("1\n2\n3\n4\n")
        extra = ["--focus_order", "far_to_near"]
    elif case == "order_and_focus_unit":
        extra = ["--focus_order", "near_to_far", "--focus_unit", "disparity"]
    elif case == "disparity_in_metres":
        extra += ["--focus_unit", "disparity", "--unit", "m"]
    elif case == "negative_distances":
        extra = ["--focus_distances=-1,0,1,2"]
    elif case == "out_is_a_file":
        out.write_text("not a folder")
    elif case == "out_under_a_file":
        (tmp_path / "file").write_text("x")
        out = tmp_path / "file" / "out"
    elif case == "out_is_the_stack":
        out = stack
    elif case == "out_not_writable":
        if os.geteuid() == 0:  # root writes anywhere on a writable file system: use one that is not
            out = "/proc/dualfocus_out"
        else:
            locked = tmp_path / "locked"
            locked.mkdir(mode=0o555)
            out = locked / "out"
    assert predict("--stack", folder, "--out", out, *WORK, *extra) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: ") and words in error, error
    assert len(error.strip().splitlines()) == 1  # one message, no traceback
    if case == "out_is_a_file":
        assert (tmp_path / "out").read_text() == "not a folder"
    elif case == "out_is_the_stack":
        assert sorted(os.listdir(stack)) == [f"photo_{i:02d}.png" for i in range(NUM_SLICES)]
    elif not case.startswith("out_"):
        assert not os.path.exists(out)


@pytest.mark.parametrize("values, focus_unit, words, fixed", [
    # distances: a slice at infinity gets a large finite distance (or all values in diopters)
    ("0.5,0.8,1.2,inf", None, "large finite distance (e.g. 100x the farthest other one)", "0.5,0.8,1.2,120"),
    ("2,1.25,0.8,nan", "diopter", "A slice focused at infinity is at 0 diopters", "2,1.25,0.8,0"),
    ("2D,1.25D,0.8D,nanD", None, "A slice focused at infinity is at 0 diopters", "2D,1.25D,0.8D,0D"),
    ("1.5,0.5,nan,-1.5", "disparity", "Drop the slice or give it a finite value", "1.5,0.5,-0.5,-1.5"),
])
def test_non_finite_focus_hint_suggests_values_the_command_accepts(stack, tmp_path, capsys, values, focus_unit,
                                                                    words, fixed):
    unit_args = ["--focus_unit", focus_unit] if focus_unit else []
    assert predict("--stack", stack, "--out", tmp_path / "bad", *WORK, *unit_args, f"--focus_distances={values}") == 2
    error = capsys.readouterr().err
    assert "Non-finite focus positions" in error and words in error, error
    if focus_unit in ("diopter", "disparity") or "D" in values:
        assert "distance" not in error.split(").", 1)[1]  # no advice in another unit
    # Doing what the hint says works.
    assert predict("--stack", stack, "--out", tmp_path / "fixed", *WORK, *unit_args, f"--focus_distances={fixed}") == 0
