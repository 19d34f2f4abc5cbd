"""The files `dualfocus-predict` writes, and how they are written: atomically, into a folder one run owns.

Files (depth and uncertainty at the input photos' pixel grid, float32, in the depth unit of metadata.json):

    depth.npy, uncertainty.npy                NumPy float32 (H, W)
    depth.exr, uncertainty.exr                OpenEXR, one float32 channel "Y" (Blender, Nuke, GIMP, darktable)
    depth.tif, uncertainty.tif                32-bit float TIFF (photo editors, ImageJ, QGIS)
    depth_16bit.png, uncertainty_16bit.png    16-bit grey PNG: value = offset + scale * pixel; offset, scale
                                              and unit in its text chunks and in metadata.json
    aif.png                                   the all-in-focus image (8-bit RGB, same grid)
    depth.png, summary.png                    pictures for people (colour bar, slices, uncertainty)
    points.ply                                with --ply, where depth converts to a distance
    metadata.json                             units, focus positions, method, checkpoint, alignment, timings,
                                              grids and the list of files; written LAST

Writing: every file goes to a hidden temporary name in the folder and is renamed into place once complete,
so no file that loads is ever partial. The folder is locked for the run (an advisory `fcntl` lock, released
when the process ends, however it ends); a second run into the same folder is refused with a message naming
the holder. When a run takes the folder, the files of an earlier run move to the hidden folder
`.dualfocus_previous_run/`, so while it works (and if it is killed) nothing visible could be read as its
output; it renames its complete files in, writes metadata.json LAST, then deletes the earlier files. A run
that fails with an error (or Ctrl-C) moves the earlier files back. So a folder with metadata.json holds
exactly one run's files, and one without it holds no earlier run's files.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import shutil
import tempfile

import numpy as np
from PIL import Image, TiffImagePlugin  # noqa: F401 - registers the TIFF writer: else Pillow imports all formats
from PIL.PngImagePlugin import PngInfo

from dualfocus_jax.folder_lock import FolderBusy, FolderLock, lock_holder
from dualfocus_jax.inference.depth_prediction import DepthPrediction
from dualfocus_jax.inference.focus_units import FocusWorkingUnits
from dualfocus_jax.inference.point_cloud import write_ply
from dualfocus_jax.visualize import Panel, save_panels_png, save_rgb_png, save_scalar_png

METADATA_FILE = "metadata.json"
LOCK_FILE = ".dualfocus_predict.lock"
PARTIAL_MARK = ".partial-"
PREVIOUS_DIR = ".dualfocus_previous_run"  # the files of the run before, while a new run works
# Every name a run may write: the files of an earlier run that this one does not rewrite are removed too.
OUTPUT_FILES = ("depth.npy", "uncertainty.npy", "depth.exr", "uncertainty.exr", "depth.tif", "uncertainty.tif",
                "depth_16bit.png", "uncertainty_16bit.png", "aif.png", "depth.png", "summary.png", "points.ply",
                METADATA_FILE)


class OutputFolderError(ValueError):
    """An --out folder that cannot be written; the message names the problem and the fix."""


def check_output_folder(out_dir: str) -> None:
    """Raises OutputFolderError when `out_dir` is a file, lies under a file, cannot be created or written, or
    another run holds it. Creates nothing; quick, so it runs before any heavy step."""
    path = os.path.abspath(out_dir)
    if os.path.exists(path) and not os.path.isdir(path):
        raise OutputFolderError(f"--out {out_dir!r} is a file, not a folder; choose a folder for the outputs "
                                "(it is created if missing).")
    existing = path
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise OutputFolderError(f"--out {out_dir!r} cannot be created: {existing!r} is a file, not a folder.")
    try:
        with tempfile.NamedTemporaryFile(dir=existing, prefix=".dualfocus-probe-"):
            pass
    except OSError as error:
        raise OutputFolderError(f"--out {out_dir!r} is not writable ({existing!r}: {error.strerror or error}); "
                                "choose a folder you can write to.") from None
    if os.path.isdir(path):
        holder = lock_holder(os.path.join(path, LOCK_FILE))
        if holder:
            raise OutputFolderError(_busy_message(out_dir, holder))


class OutputFolder:
    """Context manager owning `out_dir` for one run: lock on enter, stage files, `commit` them, unlock on exit.

        with OutputFolder(out) as folder:
            folder.stage("depth.npy", lambda path: np.save(path, depth))   # written to a temporary name
            folder.commit(metadata)                                        # earlier files out, new files in
    """

    def __init__(self, out_dir: str):
        self.out_dir = os.path.abspath(out_dir)
        self._staged: list[tuple[str, str]] = []
        self._lock = None
        self._committing = False
        self._pool = None
        self._pending: list = []

    def __enter__(self) -> OutputFolder:
        check_output_folder(self.out_dir)
        try:
            os.makedirs(self.out_dir, exist_ok=True)
            lock = FolderLock(os.path.join(self.out_dir, LOCK_FILE))
            lock.acquire()  # POSIX only; elsewhere the files are still written atomically
        except FolderBusy as busy:
            raise OutputFolderError(_busy_message(self.out_dir, busy.holder)) from None
        except OSError as error:
            raise OutputFolderError(f"cannot create --out {self.out_dir!r} ({error.strerror or error}).") from None
        self._lock = lock
        for name in os.listdir(self.out_dir):  # leftovers of a run that was killed while writing
            if PARTIAL_MARK in name:
                _remove(os.path.join(self.out_dir, name))
        self._hide_earlier_run()
        return self

    def _hide_earlier_run(self) -> None:
        """Moves the visible files of an earlier run into PREVIOUS_DIR (replacing what a run killed before left
        there); when nothing is visible, what PREVIOUS_DIR holds stays (it is the last complete run's)."""
        previous = os.path.join(self.out_dir, PREVIOUS_DIR)
        visible = [name for name in OUTPUT_FILES if os.path.lexists(os.path.join(self.out_dir, name))]
        if not visible:
            return
        shutil.rmtree(previous, ignore_errors=True)
        os.makedirs(previous)
        # metadata.json first: from its move on, the folder no longer claims to hold a complete run.
        for name in sorted(visible, key=lambda n: n != METADATA_FILE):
            os.replace(os.path.join(self.out_dir, name), os.path.join(previous, name))

    def _restore_earlier_run(self) -> None:
        previous = os.path.join(self.out_dir, PREVIOUS_DIR)
        if not os.path.isdir(previous):
            return
        names = sorted(os.listdir(previous), key=lambda n: n == METADATA_FILE)  # metadata.json last
        for name in names:
            if not os.path.lexists(os.path.join(self.out_dir, name)):
                os.replace(os.path.join(previous, name), os.path.join(self.out_dir, name))
        shutil.rmtree(previous, ignore_errors=True)

    def __exit__(self, exc_type, *exc_info) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)  # no writer may still be creating a temporary file
            self._pool, self._pending = None, []
        for temporary, _ in self._staged:  # a failed run leaves no temporary files behind
            _remove(temporary)
        if exc_type is not None and self._lock is not None and not self._committing:
            try:
                self._restore_earlier_run()  # a failed run leaves the folder as it found it
            except OSError:
                pass
        self._staged = []
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def stage(self, name: str, write, *, background: bool = False) -> str:
        """Calls write(temporary path) and keeps the file for `commit`; returns the final path.

        background=True runs the write in a worker thread (encoders and file writes release the GIL, so
        12 MP EXR/PNG/TIFF files are written side by side); `commit` waits for them and re-raises the first
        failure."""
        base, extension = os.path.splitext(name)
        temporary = os.path.join(self.out_dir, f".{base}{PARTIAL_MARK}{os.getpid()}{extension}")
        self._staged.append((temporary, os.path.join(self.out_dir, name)))
        if background:
            if self._pool is None:
                self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=max(2, min(4, os.cpu_count() or 1)),
                                                                   thread_name_prefix="dualfocus-write")
            self._pending.append(self._pool.submit(_write_and_sync, write, temporary))
        else:
            _write_and_sync(write, temporary)
        return os.path.join(self.out_dir, name)

    def wait(self) -> None:
        """Waits for the background writes; re-raises the first failure."""
        pending, self._pending = self._pending, []
        errors = [future.exception() for future in pending]
        for error in errors:
            if error is not None:
                raise error

    def commit(self, metadata: dict) -> list[str]:
        """Removes the files of an earlier run, renames the staged files into place, then writes
        metadata.json (with the list of files) last; returns the final paths, metadata.json last."""
        self.wait()
        finals = [final for _, final in self._staged]
        self._committing = True  # from here on the earlier files never come back beside the new ones
        for name in OUTPUT_FILES:
            _remove(os.path.join(self.out_dir, name))
        for temporary, final in self._staged:
            os.replace(temporary, final)
        self._staged = []
        metadata = dict(metadata, files=[os.path.basename(p) for p in finals] + [METADATA_FILE])
        path = os.path.join(self.out_dir, METADATA_FILE)
        temporary = os.path.join(self.out_dir, f".metadata{PARTIAL_MARK}{os.getpid()}.json")
        with open(temporary, "w", encoding="utf-8") as handle:
            json.dump(metadata, handle, indent=2, default=_json_default)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
        shutil.rmtree(os.path.join(self.out_dir, PREVIOUS_DIR), ignore_errors=True)
        return finals + [path]


def write_prediction(folder: OutputFolder, prediction: DepthPrediction, *, depth_HW: np.ndarray,
                     uncertainty_HW: np.ndarray, all_in_focus_HWC: np.ndarray, images_SHWC: np.ndarray,
                     focus_S, unit: str, title: str, points=None) -> dict:
    """Stages every output file of one prediction in `folder` (call `folder.commit` after).

    depth_HW, uncertainty_HW, all_in_focus_HWC: at the output (input photos') pixel grid (all_in_focus_HWC
      may be a function returning it: it is then computed while the maps are being written); `prediction` and
    images_SHWC at the working grid, for the pictures. points: (points (N, 3), colours (N, 3)) or None.
    Returns the metadata of the files (the 16-bit PNG scales).
    """
    focus = np.asarray(focus_S, np.float64)
    depth = np.asarray(depth_HW, np.float32)
    uncertainty = np.asarray(uncertainty_HW, np.float32)
    files: dict = {}
    meaning = prediction.units.describe(unit)  # e.g. "RELATIVE depth in slice units": said in every file
    for name, array in (("depth", depth), ("uncertainty", uncertainty)):
        folder.stage(f"{name}.npy", lambda path, a=array: _save_npy(path, a), background=True)
        folder.stage(f"{name}.exr", lambda path, a=array, n=name: write_exr(path, a, quantity=n, unit=unit,
                                                                            meaning=meaning), background=True)
        folder.stage(f"{name}.tif", lambda path, a=array, n=name: write_float_tiff(
            path, a, description=f"{n} ({unit}); {meaning}"), background=True)
        if name == "depth":
            low, high = float(focus.min()), float(focus.max())
        else:
            low, high = 0.0, float(max(np.max(uncertainty), 0.0))
        scale = (high - low) / 65535.0 if high > low else 1.0
        folder.stage(f"{name}_16bit.png", lambda path, a=array, n=name, lo=low, sc=scale:
                     write_png16(path, a, offset=lo, scale=sc, quantity=n, unit=unit, meaning=meaning),
                     background=True)
        files[f"{name}_16bit.png"] = {"offset": low, "scale": scale, "unit": unit,
                                      "value": f"{name} = offset + scale * pixel"}
    aif = all_in_focus_HWC() if callable(all_in_focus_HWC) else all_in_focus_HWC
    folder.stage("aif.png", lambda path: save_rgb_png(path, aif, format="PNG", compress_level=1), background=True)
    depth_panel = _depth_panel(prediction.depth_HW, focus, unit, prediction.units)
    folder.stage("depth.png", lambda path: save_scalar_png(path, depth_panel, format="png"), background=True)
    picks = np.unique(np.linspace(0, len(focus) - 1, min(3, len(focus))).round().astype(int))
    panels = [Panel(f"slice {i + 1}/{len(focus)}: focus {focus[i]:.3g} {unit}", images_SHWC[i], kind="rgb")
              for i in picks]
    small_uncertainty = prediction.uncertainty_HW
    panels += [depth_panel,
               Panel(f"uncertainty (std, {unit})", small_uncertainty, cmap="magma", vmin=0.0,
                     vmax=float(np.percentile(small_uncertainty, 98)) or None, label=unit),
               Panel("all-in-focus", prediction.all_in_focus_HWC, kind="rgb")]
    folder.stage("summary.png", lambda path: save_panels_png(
        path, panels, columns=3, title=f"{title}\n{prediction.units.describe(unit)}", format="png"), background=True)
    if points is not None:
        folder.stage("points.ply", lambda path: write_ply(path, points[0], points[1]), background=True)
    return files


def write_exr(path: str, array_HW: np.ndarray, *, quantity: str = "depth", unit: str = "", meaning: str = "") -> str:
    """One float32 channel "Y" (grey in viewers); the quantity, unit and meaning as header strings.
    ZIP-compressed up to 4 MP; larger maps are stored uncompressed: an upsampled float map's noisy mantissas
    compress little for a lot of CPU (README, "Benchmarks")."""
    import OpenEXR  # only needed to write EXR files; kept off the import path of the library's other users

    compression = OpenEXR.ZIP_COMPRESSION if np.size(array_HW) <= 4_000_000 else OpenEXR.NO_COMPRESSION
    header = {"compression": compression, "type": OpenEXR.scanlineimage,
              "dualfocus_quantity": quantity, "dualfocus_unit": unit}
    if meaning:
        header["dualfocus_meaning"] = meaning
    with OpenEXR.File(header, {"Y": np.ascontiguousarray(array_HW, np.float32)}) as handle:
        handle.write(path)
    return path


def write_float_tiff(path: str, array_HW: np.ndarray, description: str = "") -> str:
    """32-bit float grey TIFF (Pillow mode F), uncompressed (deflate takes 15x longer at 12 MP); the
    description (quantity, unit, meaning) in its ImageDescription tag."""
    extra = {"description": description} if description else {}
    Image.fromarray(np.ascontiguousarray(array_HW, np.float32)).save(path, format="TIFF", **extra)
    return path


def write_png16(path: str, array_HW: np.ndarray, *, offset: float, scale: float, quantity: str, unit: str,
                meaning: str = "") -> str:
    """16-bit grey PNG with pixel = round((value - offset) / scale), clipped to [0, 65535]; the text chunks
    say how to convert back."""
    pixels = np.clip(np.round((np.asarray(array_HW, np.float64) - offset) / scale), 0, 65535).astype(np.uint16)
    info = PngInfo()
    info.add_text("dualfocus_quantity", quantity)
    info.add_text("dualfocus_unit", unit)
    info.add_text("dualfocus_offset", repr(float(offset)))
    info.add_text("dualfocus_scale", repr(float(scale)))
    info.add_text("Description", f"{quantity} ({unit}) = {offset!r} + {scale!r} * pixel"
                  + (f"; {meaning}" if meaning else ""))
    if meaning:
        info.add_text("dualfocus_meaning", meaning)
    Image.fromarray(pixels).save(path, format="PNG", pnginfo=info, compress_level=1)  # fast; 5x smaller than raw
    return path


def read_png16(path: str) -> np.ndarray:
    """The values of a PNG written by `write_png16` (float64), from its own text chunks."""
    with Image.open(path) as image:
        offset, scale = float(image.text["dualfocus_offset"]), float(image.text["dualfocus_scale"])
        pixels = np.asarray(image).astype(np.float64)
    return offset + scale * pixels


def _save_npy(path: str, array: np.ndarray) -> None:
    with open(path, "wb") as handle:  # np.save(path) would append ".npy" to the temporary name
        np.save(handle, np.asarray(array, np.float32))


def _depth_panel(depth_HW: np.ndarray, focus_S: np.ndarray, unit: str, units: FocusWorkingUnits) -> Panel:
    """The colour-mapped depth (turbo_r: red = near, blue = far, whatever the unit). Colours span the
    1st-99th percentile of the depths present, inside the focus range (depth cannot leave it). For wide
    focus spans (inverse-distance mode) the map shows log10 depth, so near structure is not squeezed into
    one colour by the far values; for diopters and disparities (larger = nearer) the colour map is reversed."""
    values, label, title = depth_HW.astype(np.float64), unit, f"depth ({unit})"
    if units.relative:
        title = "relative depth (slice units: 0 = nearest slice)"
    low_focus, high_focus = focus_S.min(), focus_S.max()
    if units.mode == "inverse distance":
        values, label, title = np.log10(values), f"log10 depth ({unit})", f"depth ({unit}, log scale)"
        low_focus, high_focus = np.log10(low_focus), np.log10(high_focus)
    low, high = np.percentile(values, [1, 99])
    low, high = max(low, low_focus), min(high, high_focus)
    if not high > low:
        low, high = low_focus, high_focus
    cmap = "turbo" if units.focus_unit in ("diopter", "disparity") else "turbo_r"
    if units.focus_unit in ("diopter", "disparity"):
        title += ", larger = nearer"
    return Panel(title, values.astype(np.float32), vmin=float(low), vmax=float(high), label=label, cmap=cmap)


def _busy_message(out_dir: str, holder: str) -> str:
    return (f"--out {out_dir!r} is being written by another prediction ({holder}); wait for it to finish or "
            "choose another --out.")


def _write_and_sync(write, temporary: str) -> None:
    write(temporary)
    _fsync(temporary)


def _fsync(path: str) -> None:
    try:
        with open(path, "rb") as handle:
            os.fsync(handle.fileno())
    except OSError:
        pass  # some file systems cannot fsync; the rename still keeps partial files out of sight


def _remove(path: str) -> None:
    try:
        os.remove(path)
    except FileNotFoundError:
        pass


def _json_default(value):
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return str(value)
