"""The predictor as an installed package: its console command, its dependencies (core vs extras, consistent
with requirements.txt), what it imports, and the persistent compilation cache.

The non-editable install into a fresh virtualenv (`pip install .`, then `dualfocus-predict` from /) needs the
package registry and minutes, so it is verified by hand (README); here the pieces it relies on are checked.
"""

import ast
import importlib
import json
import os
import re
import subprocess
import sys
import tomllib

import numpy as np
import pytest
from packaging.requirements import Requirement

from test_predict_outputs import write_stack

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
with open(os.path.join(REPO, "pyproject.toml"), "rb") as _handle:
    PYPROJECT = tomllib.load(_handle)["project"]
TRAINING_ONLY = ("tensorflow_datasets", "grain", "pyarrow", "tensorflow", "optax", "ml_collections", "tensorboardX",
                 "h5py", "array_record")


def _name(requirement: str) -> str:
    return re.sub(r"[-_.]+", "-", Requirement(requirement).name).lower()


def _pins():
    pins = {}
    with open(os.path.join(REPO, "requirements.txt"), encoding="utf-8") as handle:
        for line in handle:
            line = line.split("#", 1)[0].strip()
            if line:
                name, version = line.split("==")
                pins[_name(name)] = version.strip()
    return pins


def test_console_command_is_declared_and_resolves():
    assert PYPROJECT["scripts"] == {"dualfocus-predict": "dualfocus_jax.predict:main"}
    module, function = PYPROJECT["scripts"]["dualfocus-predict"].split(":")
    main = getattr(importlib.import_module(module), function)
    assert main(["--stack", "/nonexistent", "--out", "/tmp/x", "--method", "classical",
                 "--nocompilation_cache"]) == 2  # an int exit status, as console scripts need


def test_help_answers_without_importing_jax():
    result = subprocess.run([sys.executable, "-c", "import sys\nfrom dualfocus_jax.predict import main\n"
                             "try:\n    main(['--help'])\nexcept SystemExit as e:\n    assert e.code == 0\n"
                             "assert 'jax' not in sys.modules, 'jax imported for --help'\n"], cwd="/",
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "usage: dualfocus-predict" in result.stdout and "--focus_unit" in result.stdout


def test_dependencies_are_split_into_core_and_extras_consistent_with_requirements():
    core = {_name(r) for r in PYPROJECT["dependencies"]}
    extras = {extra: {_name(r) for r in requirements} for extra, requirements in
              PYPROJECT["optional-dependencies"].items()}
    assert {"train", "datasets", "notebook"} <= set(extras)
    assert {"jax", "flax", "orbax-checkpoint", "numpy", "pillow", "openexr", "tifffile", "matplotlib",
            "absl-py"} <= core
    assert not core & {"tensorflow-datasets", "grain", "pyarrow", "optax", "ml-collections", "ipykernel"}
    assert {"optax", "grain", "tensorflow-datasets", "ml-collections", "tensorboardx"} <= extras["train"]
    assert {"tensorflow-datasets", "h5py"} <= extras["datasets"]
    assert {"ipykernel", "nbclient", "nbformat"} <= extras["notebook"]
    pins = _pins()
    for requirement in PYPROJECT["dependencies"] + sum(PYPROJECT["optional-dependencies"].values(), []):
        parsed = Requirement(requirement)
        if _name(requirement) == "dualfocus-jax":
            continue
        assert _name(requirement) in pins, f"{parsed.name} is not pinned in requirements.txt"
        assert parsed.specifier.contains(pins[_name(requirement)]), (requirement, pins[_name(requirement)])


def test_every_third_party_import_of_the_predictor_is_a_core_dependency():
    """Imports of dualfocus_jax outside training/ name only core dependencies (or the standard library)."""
    core_modules = {"jax", "flax", "orbax", "numpy", "scipy", "skimage", "PIL", "matplotlib", "OpenEXR", "tifffile",
                    "absl"}
    found = {}
    for folder, _, files in os.walk(os.path.join(REPO, "dualfocus_jax")):
        if os.sep + "training" in folder or "pretrained" in folder:
            continue
        for name in files:
            if name.endswith(".py"):
                with open(os.path.join(folder, name), encoding="utf-8") as handle:
                    tree = ast.parse(handle.read())
                for node in ast.walk(tree):
                    if isinstance(node, ast.Import):
                        modules = [alias.name for alias in node.names]
                    elif isinstance(node, ast.ImportFrom) and node.level == 0:
                        modules = [node.module]
                    else:
                        continue
                    for module in modules:
                        found.setdefault(module.split(".")[0], set()).add(name)
    third_party = {m for m in found if m not in sys.stdlib_module_names and m not in ("dualfocus_jax", "__future__")}
    assert third_party <= core_modules | {"tensorflow_datasets"}, third_party - core_modules
    # data_features.py (the TFDS feature spec) and prepared_splits.py (opening prepared splits, for training and
    # evaluation) are the modules outside training/ for datasets; the predictor imports neither.
    assert found.get("tensorflow_datasets", set()) <= {"data_features.py", "prepared_splits.py"}


@pytest.fixture(scope="module")
def tiny_stack(tmp_path_factory):
    return write_stack(tmp_path_factory.mktemp("tiny") / "photos")


def test_a_whole_network_prediction_imports_no_training_or_dataset_package(tiny_stack, tmp_path):
    """`python -c "import dualfocus_jax.predict"` and a full prediction run, in a fresh process, from /."""
    script = (
        "import sys\nimport dualfocus_jax.predict\n"
        f"bad = [m for m in sys.modules if m.startswith({TRAINING_ONLY!r})]\nassert not bad, bad\n"
        f"code = dualfocus_jax.predict.main(['--stack', {str(tiny_stack)!r}, '--out', {str(tmp_path / 'out')!r}, "
        "'--max_size', '32', '--nocompilation_cache', '--focus_distances', '1,2,3,4'])\nassert code == 0, code\n"
        f"bad = [m for m in sys.modules if m.startswith({TRAINING_ONLY!r})]\nassert not bad, bad\n")
    result = subprocess.run([sys.executable, "-c", script], cwd="/", capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert np.load(tmp_path / "out" / "depth.npy").shape == (96, 128)


def test_the_shipped_model_is_package_data():
    assert PYPROJECT.get("name") == "dualfocus_jax"
    with open(os.path.join(REPO, "pyproject.toml"), "rb") as handle:
        setuptools = tomllib.load(handle)["tool"]["setuptools"]
    assert setuptools["package-data"]["dualfocus_jax.pretrained"] == ["**/*"]
    assert "dualfocus_jax*" in setuptools["packages"]["find"]["include"]


# The persistent compilation cache.

def _predict_subprocess(stack, out, cache_dir, extra=()):
    command = [sys.executable, "-m", "dualfocus_jax.predict", "--stack", str(stack), "--out", str(out),
               "--max_size", "64", "--method", "classical", "--focus_distances", "1,2,3,4", *extra]
    if cache_dir is not None:
        command += ["--compilation_cache_dir", str(cache_dir)]
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)


def _entries(folder):
    return sorted(n for n in os.listdir(folder) if not n.startswith(".")) if os.path.isdir(folder) else []


def test_compilation_cache_is_filled_once_and_reused(tiny_stack, tmp_path):
    cache = tmp_path / "cache"
    first = _predict_subprocess(tiny_stack, tmp_path / "first", cache)
    assert first.returncode == 0, first.stderr
    entries = _entries(cache)
    assert entries, "nothing was cached"
    stored = {name: (cache / name).stat().st_mtime_ns for name in entries}
    second = _predict_subprocess(tiny_stack, tmp_path / "second", cache)
    assert second.returncode == 0, second.stderr
    after = _entries(cache)
    # Every program the first run stored was read back, not compiled and written again...
    assert {name: (cache / name).stat().st_mtime_ns for name in entries} == stored
    # ...under the same key (no program stored twice). A new name may appear: a program that compiled just under
    # the storing threshold (0.5 s) in the first run and just over it on a loaded machine in the second.
    programs = [name.rsplit("-", 2)[0] for name in after]
    assert set(entries) <= set(after) and len(programs) == len(set(programs)), after
    metadata = json.loads((tmp_path / "second" / "metadata.json").read_text())
    assert metadata["compilation_cache"] == str(cache)
    np.testing.assert_array_equal(np.load(tmp_path / "first" / "depth.npy"), np.load(tmp_path / "second" / "depth.npy"))


def test_compilation_cache_default_folder_switches_and_failures(tmp_path, monkeypatch):
    from dualfocus_jax.compilation_cache import CACHE_ENV, default_cache_dir, enable_compilation_cache

    monkeypatch.delenv(CACHE_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == str(tmp_path / "xdg" / "dualfocus_jax" / "xla")
    monkeypatch.setenv(CACHE_ENV, "off")
    assert default_cache_dir() is None and enable_compilation_cache() is None
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "mine"))
    assert default_cache_dir() == str(tmp_path / "mine")
    (tmp_path / "a_file").write_text("x")
    with pytest.warns(UserWarning, match="compilation cache off"):
        assert enable_compilation_cache(str(tmp_path / "a_file" / "cache")) is None  # never fails


def test_nocompilation_cache_writes_no_cache(tiny_stack, tmp_path):
    environment = dict(os.environ, DUALFOCUS_JAX_CACHE_DIR=str(tmp_path / "env_cache"))
    result = subprocess.run([sys.executable, "-m", "dualfocus_jax.predict", "--stack", str(tiny_stack), "--out",
                             str(tmp_path / "out"), "--max_size", "64", "--method", "classical", "--focus_distances",
                             "1,2,3,4", "--nocompilation_cache"], cwd=REPO, capture_output=True, text=True,
                            timeout=600, env=environment)
    assert result.returncode == 0, result.stderr
    assert not _entries(tmp_path / "env_cache")
    assert json.loads((tmp_path / "out" / "metadata.json").read_text())["compilation_cache"] is None
