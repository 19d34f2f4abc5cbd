"""Checks on the user's manual download folder, with errors that name what is missing and where to get it.

None of the benchmark datasets can be downloaded automatically: each builder reads the user's own copy
from `manual_dir`. A builder lists what it expects, checks it all before any decoding starts, and a
missing or incomplete folder fails with one message naming every missing file (up to a limit) followed
by the builder's `MANUAL_DOWNLOAD_INSTRUCTIONS`.
"""

from __future__ import annotations

import os
import textwrap
from collections.abc import Sequence

from etils import epath

# More missing names than this are summarised: a folder missing 500 scenes needs the first few names
# and the count, not 3,000 lines.
_MAX_LISTED_MISSING = 20


class ManualDirError(ValueError):
    """The manual download folder is missing, empty or incomplete; the message says what to put there."""


class CorruptFileError(ValueError):
    """A file in the manual download folder cannot be decoded; the message names the file."""


def _readable(instructions: str) -> str:
    """Builders indent their instructions like the TFDS convention; messages show them flush left."""
    return "What to put there:\n" + textwrap.dedent(instructions).strip()


def manual_dir_path(manual_dir: str | os.PathLike | None, dataset_name: str, instructions: str) -> epath.Path:
    """The manual folder as a path, after checking that it exists and is a non-empty directory.

    Raises:
      ManualDirError: no folder given, not a directory, or empty; the message carries `instructions`.
    """
    instructions = _readable(instructions)
    if manual_dir is None or not os.fspath(manual_dir):
        raise ManualDirError(
            f"{dataset_name} needs its source files in a manual folder, and none was given. Pass "
            f"--manual_dir=/path/to/folder (or DownloadConfig(manual_dir=...)).\n{instructions}")
    path = epath.Path(manual_dir)
    if not path.is_dir():
        raise ManualDirError(
            f"The manual folder {os.fspath(path)!r} for {dataset_name} does not exist or is not a directory. "
            f"Create it and put the source files there.\n{instructions}")
    if not any(path.iterdir()):
        raise ManualDirError(
            f"The manual folder {os.fspath(path)!r} for {dataset_name} is empty.\n{instructions}")
    return path


def raise_if_missing(missing: Sequence[str], manual_dir: os.PathLike | str, dataset_name: str,
                     instructions: str) -> None:
    """Raises ManualDirError listing `missing` (paths relative to the manual folder) if there are any."""
    if not missing:
        return
    instructions = _readable(instructions)
    listed = list(missing[:_MAX_LISTED_MISSING])
    more = len(missing) - len(listed)
    lines = "\n".join(f"  - {name}" for name in listed)
    if more > 0:
        lines += f"\n  ... and {more} more"
    raise ManualDirError(
        f"The manual folder {os.fspath(manual_dir)!r} for {dataset_name} is incomplete; {len(missing)} "
        f"expected file(s) missing:\n{lines}\n{instructions}")


def manual_dir_error(problem: str, instructions: str) -> ManualDirError:
    """A ManualDirError whose message is `problem` followed by the builder's instructions."""
    return ManualDirError(f"{problem}\n{_readable(instructions)}")


def manual_dir_from_download_manager(dl_manager, dataset_name: str, instructions: str) -> epath.Path:
    """The manual folder of a TFDS download manager, checked like `manual_dir_path`.

    TFDS raises a bare AssertionError for a missing folder; this turns it into a ManualDirError (a
    ValueError) with the dataset's own instructions, so `tfds build` and the absl entry point fail alike.
    """
    try:
        path = dl_manager.manual_dir
    except AssertionError:
        path = getattr(dl_manager, "_manual_dir", None)
    return manual_dir_path(path, dataset_name, instructions)
