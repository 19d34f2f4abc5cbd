"""experiments/colab/evaluate.ipynb, executed end to end in a fresh python3 kernel (the venv's, through
ipykernel) on a 4-example synthetic_focal test split prepared beforehand in a temporary TFDS folder, and its
last cell on a small stack of "own photos" (outside Colab the upload is replaced by a folder). Also: the Colab
forms, the repository fetched from a URL or an archive (and the message when neither is given), figures
inline with no global matplotlib backend."""

import base64
import os
import pathlib
import re
import sys
import tarfile
import zipfile
from unittest import mock

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")
pytest.importorskip("tensorflow_datasets")

from datasets.common.prepare import prepare_dataset  # noqa: E402
from datasets.synthetic_focal import synthetic_focal_dataset_builder as builder_module  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "experiments" / "colab" / "evaluate.ipynb"
NUM_EXAMPLES = 4


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    """The notebook after execution (kernel cwd: experiments/colab, as when opened there in Jupyter)."""
    data_dir = tmp_path_factory.mktemp("tfds")
    # Only the 4 test scenes (plus the one Middlebury scene the builder always writes): ~5 s instead of the
    # full 240-scene preparation; the notebook finds the prepared version and does not prepare again.
    with mock.patch.object(builder_module.Builder, "SPLIT_SIZES", {"test": NUM_EXAMPLES}):
        prepare_dataset("synthetic_focal", data_dir)
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    # After the notebook: which matplotlib backend the kernel ended with (no cell may force Agg).
    notebook.cells.append(nbformat.v4.new_code_cell("import matplotlib\nprint('backend:', matplotlib.get_backend())"))
    sys.path.insert(0, str(ROOT / "tests"))
    from test_predict_outputs import write_stack

    photos = write_stack(tmp_path_factory.mktemp("own") / "photos")
    (photos / "focus_distances.txt").write_text("0.5\n0.8\n1.2\n2.0\n")
    environment = {"DUALFOCUS_NOTEBOOK_DATA_DIR": str(data_dir),
                   "DUALFOCUS_NOTEBOOK_NUM_EXAMPLES": str(NUM_EXAMPLES),
                   "DUALFOCUS_NOTEBOOK_USER_STACK": str(photos),
                   "DUALFOCUS_JAX_CACHE_DIR": str(tmp_path_factory.mktemp("xla_cache"))}
    with mock.patch.dict(os.environ, environment):  # the kernel inherits the environment at start
        client = nbclient.NotebookClient(notebook, kernel_name="python3", timeout=600,
                                         resources={"metadata": {"path": str(NOTEBOOK.parent)}})
        client.execute()
    return notebook


def _outputs(notebook):
    return [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.get("outputs", [])]


def test_notebook_is_valid_and_has_a_parameters_cell():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(notebook)
    tagged = [cell for cell in notebook.cells if "parameters" in cell.metadata.get("tags", [])]
    assert len(tagged) == 1
    for name in ("CHECKPOINT", "DATASET", "SPLIT", "DATA_DIR", "NUM_EXAMPLES"):
        assert f"{name} = " in tagged[0].source
    assert "DUALFOCUS_NOTEBOOK_DATA_DIR" in tagged[0].source and "DUALFOCUS_NOTEBOOK_NUM_EXAMPLES" in tagged[0].source


def test_no_cell_errored(executed):
    errors = [output for output in _outputs(executed) if output.output_type == "error"]
    assert not errors, [f"{e.ename}: {e.evalue}" for e in errors]
    assert all(cell.execution_count is not None for cell in executed.cells if cell.cell_type == "code")


def test_metrics_table_has_rmse_and_both_methods(executed):
    tables = [output.data["text/markdown"] for output in _outputs(executed)
              if output.output_type == "display_data" and "text/markdown" in output.get("data", {})]
    assert len(tables) == 1
    table = tables[0]
    assert "rmse" in table.splitlines()[2]  # header row of the Markdown table
    rows = [line for line in table.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert [row.split("|")[1].strip().split(" (")[0] for row in rows] == ["DualFocus network", "classical baseline"]
    rmse_column = table.splitlines()[2].split("|").index(" rmse ")
    for row in rows:
        rmse = float(row.split("|")[rmse_column])
        assert 0.0 < rmse < 10.0  # metres, in a scene of depth within ~[0.5, 10] m
    assert f"{NUM_EXAMPLES} images" in table


def _images(cell):
    return [output.data["image/png"] for output in cell.get("outputs", [])
            if output.output_type == "display_data" and "image/png" in output.get("data", {})]


def _text(cell):
    return "".join(output.get("text", "") for output in cell.get("outputs", []) if output.output_type == "stream")


def test_two_example_panels_were_shown_inline(executed):
    panels_cell = next(cell for cell in executed.cells if "example_figure(" in cell.source)
    images = _images(panels_cell)
    assert len(images) == 2
    for image in images:
        assert base64.b64decode(image)[:8] == b"\x89PNG\r\n\x1a\n"
    assert "backend: agg" not in _text(executed.cells[-1]).lower()  # no cell switched the session to Agg


def test_own_photos_cell_shows_the_prediction(executed):
    cell = next(cell for cell in executed.cells if "files.upload()" in cell.source and "run_prediction" in cell.source)
    assert len(_images(cell)) == 1
    text = _text(cell)
    assert "[5/5] wrote" in text and "outputs in " in text and "depth.exr" in text
    assert "my_focal_stack_depth" in text  # the outputs lie beside the photos


def test_notebook_has_colab_forms_and_no_global_backend():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    source = "\n".join(cell.source for cell in notebook.cells if cell.cell_type == "code")
    assert "matplotlib.use(" not in source and "eval_panels" not in source
    assert "import matplotlib.pyplot" not in source and "from matplotlib import pyplot" not in source
    parameters = next(cell for cell in notebook.cells if "parameters" in cell.metadata.get("tags", []))
    for line in parameters.source.splitlines():
        if re.match(r"^[A-Z_]+ = ", line) and not line.startswith(("DATA_DIR = os", "NUM_EXAMPLES = int")):
            assert "#@param" in line, line
    setup = notebook.cells[1].source
    assert 'REPO_URL = ""  #@param {type:"string"}' in setup and "UPLOAD_ARCHIVE = False  #@param" in setup
    own = next(cell for cell in notebook.cells if "files.upload()" in cell.source and "run_prediction" in cell.source)
    for name in ("FOCUS_VALUES", "FOCUS_UNIT", "FOCUS_ORDER", "METHOD", "MAX_SIZE"):
        assert re.search(rf"^{name} = .*#@param", own.source, re.MULTILINE), name


@pytest.fixture
def setup_cell(tmp_path, monkeypatch):
    """The first code cell's functions, run locally (it only finds the checkout), with the Colab checkout
    folder moved to tmp_path."""
    monkeypatch.chdir(ROOT)
    monkeypatch.setattr(sys, "path", list(sys.path))
    namespace = {}
    exec(nbformat.read(NOTEBOOK, as_version=4).cells[1].source, namespace)
    namespace["CHECKOUT"] = tmp_path / "checkout"
    return namespace


def _fake_repository(folder):
    (folder / "dualfocus_jax").mkdir(parents=True)
    (folder / "dualfocus_jax" / "__init__.py").write_text("")
    (folder / "datasets").mkdir()
    (folder / "datasets" / "__init__.py").write_text("")
    return folder


def test_setup_without_url_or_archive_says_what_to_do(setup_cell):
    with pytest.raises(ValueError, match="set REPO_URL to its git URL .* or tick UPLOAD_ARCHIVE"):
        setup_cell["fetch_repository"]()


def test_setup_fetches_the_repository_from_an_archive_url(setup_cell, tmp_path):
    source = _fake_repository(tmp_path / "src" / "dualfocus_jax-main")
    archive = tmp_path / "src" / "dualfocus_jax-main.zip"
    with zipfile.ZipFile(archive, "w") as handle:
        for path in source.rglob("*"):
            handle.write(path, path.relative_to(tmp_path / "src"))
    setup_cell["REPO_URL"] = archive.as_uri()  # file:// stands for https:// here
    root = setup_cell["fetch_repository"]()
    assert root == tmp_path / "checkout" and setup_cell["is_repository"](root)


def test_setup_unpacks_an_uploaded_tar_archive(setup_cell, tmp_path):
    source = _fake_repository(tmp_path / "src" / "repo")
    archive = tmp_path / "repo.tar.gz"
    with tarfile.open(archive, "w:gz") as handle:
        handle.add(source, arcname="repo")
    root = setup_cell["unpack"](archive, tmp_path / "checkout")
    assert setup_cell["is_repository"](root)
    (tmp_path / "junk.zip").write_bytes(b"not an archive")
    with pytest.raises(ValueError, match="neither a .zip nor a .tar.gz"):
        setup_cell["unpack"](tmp_path / "junk.zip", tmp_path / "other")
