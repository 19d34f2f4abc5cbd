"""Docstrings and comments cite the design notes committed under `docs/design/`: every cited note exists, and
no source file points outside the repository for them (the notes used to live in `../shared/design/`)."""

from __future__ import annotations

import os
import re

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SOURCE_FOLDERS = ("dualfocus_jax", "experiments", "benchmarks", "configs", "datasets", "tests")
NOTE = re.compile(r"(?<![\w/.])(?:[\w./]*/)?(METHOD|METRICS|DATASETS|ARCHITECTURE)\.md")


def cited_notes() -> list[tuple[str, int, str]]:
    """(file, line, citation as written) of every design-note citation in the project's Python files."""
    found = []
    for package in SOURCE_FOLDERS:
        for folder, subfolders, files in os.walk(os.path.join(REPO, package)):
            subfolders[:] = sorted(name for name in subfolders if not name.startswith((".", "__pycache__")))
            for name in sorted(files):
                if not name.endswith(".py"):
                    continue
                path = os.path.join(folder, name)
                with open(path, encoding="utf-8") as handle:
                    for number, line in enumerate(handle, 1):
                        found += [(os.path.relpath(path, REPO), number, m.group(0)) for m in NOTE.finditer(line)]
    return found


def test_design_notes_are_cited_by_their_path_in_the_repository():
    citations = cited_notes()
    assert citations, "the model's docstrings cite docs/design/METHOD.md; the scan found none"
    wrong = [c for c in citations if not c[2].startswith("docs/design/")]
    assert not wrong, f"cite the design notes as docs/design/<NOTE>.md: {wrong}"
    missing = sorted({c[2] for c in citations if not os.path.isfile(os.path.join(REPO, c[2]))})
    assert not missing, f"cited but not in the repository: {missing}"
