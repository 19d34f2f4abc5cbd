"""experiments/colab/evaluate.ipynb, executed end to end in a fresh python3 kernel (the venv's, through
ipykernel) on a 4-example synthetic_focal test split prepared beforehand in a temporary TFDS folder."""

import base64
import os
import pathlib
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
    environment = {"DUALFOCUS_NOTEBOOK_DATA_DIR": str(data_dir),
                   "DUALFOCUS_NOTEBOOK_NUM_EXAMPLES": str(NUM_EXAMPLES)}
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


def test_two_example_panels_were_shown(executed):
    images = [output.data["image/png"] for output in _outputs(executed)
              if output.output_type == "display_data" and "image/png" in output.get("data", {})]
    assert len(images) >= 2
    for image in images:
        assert base64.b64decode(image)[:8] == b"\x89PNG\r\n\x1a\n"
