"""Every experiment config loads through the launcher's flag (locked), takes command-line overrides, rejects
typos, documents its command, hardware and target, and runs one training step (shrunk by `runlocal`)."""

import dataclasses
import glob
import os

import jax
import numpy as np
import pytest
from absl import flags
from ml_collections import config_flags

from configs.common import parse_arg
from dualfocus_jax import data_features as F
from dualfocus_jax.model.config import DualFocusConfig, model_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RECIPES = ("demo", "fod500", "ddff12", "fod500_ddff12", "nyuv2", "arkitscenes_zero_shot", "pretrained_small",
           "engine_small")
# The paper's numbers (docs/design/METHOD.md results table) each recipe's docstring must name as its target.
TARGETS = {"fod500": ("0.015", "0.112", "1.31"), "ddff12": ("4.7e-4", "0.0194", "0.800"),
           "fod500_ddff12": ("0.112", "0.0194"), "nyuv2": ("0.075", "0.013", "0.999"),
           "arkitscenes_zero_shot": ("0.28", "0.40")}
SLICES_OF_DATASET = {"ddff12": 10}


def load_with_flags(argv):
    """Parses argv like the launcher does (config_flags with lock_config=True) and returns the config."""
    values = flags.FlagValues()
    # sys_argv tells config_flags which dotted overrides to define (it reads sys.argv by default).
    config_flags.DEFINE_config_file("config", None, "config", flag_values=values, lock_config=True,
                                    sys_argv=["train", *argv])
    values(["train", *argv])
    return values.config


def test_every_config_file_is_tested():
    files = {os.path.basename(p)[:-3] for p in glob.glob(os.path.join(REPO, "configs", "*.py"))}
    assert files - {"__init__", "common", "recorded"} == set(RECIPES)  # recorded: a workdir's config


@pytest.mark.parametrize("name", RECIPES)
def test_config_loads_and_documents_command_hardware_and_target(name):
    config = load_with_flags([f"--config={REPO}/configs/{name}.py"])
    module = __import__(f"configs.{name}", fromlist=["get_config"])
    doc = module.__doc__
    assert "python -m experiments.train --config configs/" in doc
    assert "Hardware" in doc
    for number in TARGETS.get(name, ()):
        assert number in doc, f"{name}: target {number} missing from the docstring"
    assert config.input.sources and config.evals
    assert config.train.total_steps > 4 and not config.train.fast_compile


def test_overrides_work_and_typos_fail():
    config = load_with_flags([f"--config={REPO}/configs/nyuv2.py:runlocal", "--config.optimizer.lr=3e-4",
                              "--config.model.lambda_sv=0.25", "--config.input.sources.nyuv2.split=train[:10]"])
    assert config.optimizer.lr == 3e-4 and config.model.lambda_sv == 0.25
    assert config.input.sources.nyuv2.split == "train[:10]"
    assert config.train.total_steps == 4 and config.input.crop_size == (32, 32)  # runlocal
    with pytest.raises(Exception, match="lrr"):
        load_with_flags([f"--config={REPO}/configs/nyuv2.py", "--config.optimizer.lrr=3e-4"])
    with pytest.raises(Exception, match="locked|typo|not"):
        config = load_with_flags([f"--config={REPO}/configs/demo.py"])
        config.optimizer.momentum = 0.9  # a locked config refuses new fields
    with pytest.raises(ValueError, match="unknown config argument"):
        parse_arg("runlocl", runlocal=False)


def test_runlocal_arguments_combine():
    config = load_with_flags([f"--config={REPO}/configs/fod500_ddff12.py:runlocal,variant=no_spatial"])
    assert config.model.variant == "no_spatial" and config.model.size == "small"
    assert config.input.num_slices == 3 and all(e.max_examples == 2 for e in config.evals.values())
    assert config.input.sources.fod500.depth_scale == 0.2


# The model fields `config.model` exposed before it held all of DualFocusConfig's (the "before" of the test
# below: what the published recipes resolved to then).
PREVIOUSLY_EXPOSED = ("lambda_sv", "lambda_fv", "tau_rel", "smooth_l1_beta", "solver", "solver_stride", "pad_mode",
                      "conv3d_impl", "project_unimodal_at_inference")
RECIPE_ARGS = [(name, arg) for name in RECIPES for arg in (None, "runlocal")] + [
    ("fod500", "variant=dfv"), ("fod500", "variant=no_spatial"), ("ddff12", "variant=fv"),
    ("nyuv2", "variant=no_focal"), ("demo", "variant=dfv"), ("engine_small", "stage=2")]


def test_config_model_holds_every_field_of_the_model_config():
    from configs.common import base_config

    fields = {field.name for field in dataclasses.fields(DualFocusConfig)}
    model = base_config().model
    assert set(model) == fields
    # Unset: the size/variant default; the compute dtype follows the backend (float32 on a CPU).
    assert all(model[name] is None for name in fields - {"size", "variant", "dtype"})
    assert model.dtype == "auto"


def override_value(field):
    """A valid value of `field` other than the small/dualfocus default, as (command-line text, value)."""
    special = {"size": "paper", "variant": "no_spatial", "volume_mode": "difference", "solver": "cg",
               "solver_stride": 8, "pad_mode": "reflect", "conv3d_impl": "lax", "use_focal": True,  # on a no_focal base
               "pyramid_pool_grids": (1, 3), "level_weights": (0.25, 0.25, 0.25, 0.25),
               "gt_min_valid_fraction": 0.75, "tau_rel": 0.25, "smooth_l1_beta": 0.5, "dtype": "bfloat16",
               "expectation": "inverse_focus", "cost_upsampling": "joint_bilateral", "slice_prior": "blur_cells"}
    if field.name in special:
        value = special[field.name]
    elif isinstance(field.default, bool):
        value = not field.default
    elif isinstance(field.default, tuple):
        value = tuple(v + 2 for v in field.default)
    else:
        value = field.default + (2 if isinstance(field.default, int) else 0.5)
    text = f"({','.join(str(v) for v in value)})" if isinstance(value, tuple) else str(value)
    return text, value


@pytest.mark.parametrize("field", dataclasses.fields(DualFocusConfig), ids=lambda field: field.name)
def test_every_model_field_is_overridable_from_the_command_line(field):
    from dualfocus_jax.training.trainer import model_config_from

    text, value = override_value(field)
    # use_focal=False needs lambda_fv=0, so that field is switched on, from the no_focal variant.
    arg = "runlocal,variant=no_focal" if field.name == "use_focal" else "runlocal"
    config = load_with_flags([f"--config={REPO}/configs/demo.py:{arg}", f"--config.model.{field.name}={text}"])
    assert config.model[field.name] == value
    resolved = model_config_from(config.model)
    assert getattr(resolved, field.name) == value and type(getattr(resolved, field.name)) is type(value)
    without = model_config(size="small", variant="no_focal" if field.name == "use_focal" else "dualfocus")
    assert resolved != without  # the override took effect
    # Every other field keeps what the size and variant give (size and variant themselves pick those).
    assert resolved == model_config(**{"size": resolved.size, "variant": resolved.variant, field.name: value})


def test_tuple_and_numeric_overrides_accept_the_usual_spellings():
    from dualfocus_jax.training.trainer import model_config_from

    config = load_with_flags([f"--config={REPO}/configs/demo.py", "--config.model.encoder_widths=32,64,128,192",
                              "--config.model.cg_iters=20", "--config.model.lambda_sv=1",
                              "--config.model.use_spatial=false"])
    resolved = model_config_from(config.model)
    assert resolved.encoder_widths == (32, 64, 128, 192) and resolved.cg_iters == 20
    assert resolved.lambda_sv == 1.0 and isinstance(resolved.lambda_sv, float) and resolved.use_spatial is False
    with pytest.raises(Exception, match="cg_iter"):
        load_with_flags([f"--config={REPO}/configs/demo.py", "--config.model.cg_iter=20"])
    with pytest.raises(ValueError, match="cg_iters must be"):
        model_config_from(load_with_flags([f"--config={REPO}/configs/demo.py", "--config.model.cg_iters=0"]).model)


@pytest.mark.parametrize("name, arg", RECIPE_ARGS)
def test_published_configs_resolve_to_the_same_model_as_before(name, arg):
    """The model each recipe builds is the one the old 11-field block built: model_config(size, variant) with
    the previously exposed fields that the recipe set."""
    from dualfocus_jax.training.trainer import model_config_from

    config = __import__(f"configs.{name}", fromlist=["get_config"]).get_config(arg)
    exposed_now = {key: value for key, value in config.model.items()
                   if value is not None and not (key == "dtype" and value == "auto")}
    assert set(exposed_now) <= {"size", "variant", *PREVIOUSLY_EXPOSED}, f"{name} sets a field it could not set before"
    before = model_config(size=config.model.size, variant=config.model.variant,
                          **{key: config.model[key] for key in PREVIOUSLY_EXPOSED if config.model[key] is not None})
    assert model_config_from(config.model).to_dict() == before.to_dict()


def fake_records(dataset: str, count: int = 3, size: int = 40):
    slices = SLICES_OF_DATASET.get(dataset, 5)
    rng = np.random.default_rng(0)
    focus = np.linspace(0.02, 0.28, slices) if dataset == "ddff12" else np.linspace(0.5, 2.0, slices)
    records = []
    for _ in range(count):
        depth = rng.uniform(focus[0], focus[-1], (size, size)).astype(np.float32)
        records.append({F.STACK: rng.integers(0, 256, (slices, size, size, 3), dtype=np.uint8),
                        F.FOCUS_POSITIONS: focus.astype(np.float32), F.DEPTH: depth,
                        F.VALID: np.ones((size, size), bool), F.ID: b"fake"})
    return records


@pytest.fixture(scope="module")
def shared_compilation_cache(tmp_path_factory):
    """Configs with the same model and optimizer compile the same program: a persistent cache shares it (also
    between pytest-xdist workers, whose temporary folders share a parent)."""
    from jax.experimental.compilation_cache import compilation_cache

    base = tmp_path_factory.getbasetemp()
    folder = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "config_step_jax_cache"
    previous = jax.config.jax_compilation_cache_dir
    jax.config.update("jax_compilation_cache_dir", str(folder))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    compilation_cache.reset_cache()
    yield
    jax.config.update("jax_compilation_cache_dir", previous)
    compilation_cache.reset_cache()


@pytest.mark.parametrize("name", RECIPES)
def test_config_runs_one_training_step(name, shared_compilation_cache):
    from dualfocus_jax.training import mesh as mesh_lib
    from dualfocus_jax.training.input_pipeline import training_iterator
    from dualfocus_jax.training.train_state import initial_train_state, learning_rate_schedule, make_optimizer
    from dualfocus_jax.training.train_step import make_train_step
    from dualfocus_jax.training.trainer import model_config_from

    config = load_with_flags([f"--config={REPO}/configs/{name}.py:runlocal"])
    records = {key: fake_records(source.dataset) for key, source in config.input.sources.items()}
    iterator = training_iterator(config.input, seed=config.seed, records_by_source=records)
    model_config = model_config_from(config.model)
    optimizer = make_optimizer(config.optimizer, config.train.total_steps)
    mesh = mesh_lib.data_parallel_mesh()
    state = mesh_lib.replicated_on_mesh(initial_train_state(model_config, optimizer, jax.random.key(0)), mesh)
    before = mesh_lib.host_copy(state.params)
    step = make_train_step(model_config, optimizer, learning_rate_schedule(config.optimizer, 4), mesh,
                           fast_compile=config.train.fast_compile)
    state, metrics = step(state, mesh_lib.global_batch_array(next(iterator), mesh))
    metrics = jax.device_get(metrics)
    assert np.isfinite(metrics["loss_total"]) and metrics["loss_total"] > 0
    assert int(state.step) == 1
    after = mesh_lib.host_copy(state.params)
    changed = [not np.array_equal(a, b) for a, b in zip(jax.tree.leaves(before), jax.tree.leaves(after))]
    # Adam's first update is lr·sign(g) wherever g ≠ 0, but the warm-up schedules start at lr = 0.
    assert any(changed) or float(metrics["lr"]) == 0.0
