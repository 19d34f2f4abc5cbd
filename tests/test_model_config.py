"""Sizes and variants: parameter counts (via jax.eval_shape, no compute) and where the variants differ."""

import flax
import ml_collections
import pytest

from dualfocus_jax.model import DualFocusConfig, abstract_params, model_config, parameter_count


def _shapes(config, **kwargs):
    params = abstract_params(config, **kwargs)["params"]
    return {"/".join(path): leaf.shape for path, leaf in flax.traverse_util.flatten_dict(params).items()}


@pytest.mark.parametrize("variant", ["dualfocus", "no_spatial", "no_focal", "dfv", "fv"])
def test_small_size_is_at_most_one_million_parameters(variant):
    count = parameter_count(abstract_params(model_config("small", variant)))
    assert 200_000 < count <= 1_000_000, count


def test_paper_size_matches_the_papers_27m_and_dfvs_19m():
    full = parameter_count(abstract_params(model_config("paper", "dualfocus")))
    dfv = parameter_count(abstract_params(model_config("paper", "dfv")))
    assert 25_000_000 <= full <= 29_000_000, full
    assert 18_000_000 <= dfv <= 20_000_000, dfv  # docs/design/METHOD.md: DFV ≈ 19.0M


def test_parameters_do_not_depend_on_input_size_or_slices():
    config = model_config("small")
    assert _shapes(config, num_slices=2, height=32, width=32) == _shapes(config, num_slices=7, height=45, width=61)


def test_no_spatial_has_no_spatial_branch_and_the_same_encoder():
    full = _shapes(model_config("small", "dualfocus"))
    no_spatial = _shapes(model_config("small", "no_spatial"))
    assert any(name.startswith("spatial_branch/") for name in full)
    assert not any(name.startswith("spatial_branch/") for name in no_spatial)
    encoder = {k: v for k, v in full.items() if k.startswith("encoder/")}
    assert encoder == {k: v for k, v in no_spatial.items() if k.startswith("encoder/")}
    # The surfaces (C2 channels) join the decoder at the solver level (1/16 = level 1) and nowhere else.
    c2 = model_config("small").surface_channels
    key = "decoder/level1/block1/conv1/kernel"
    assert full[key][3] == no_spatial[key][3] + c2
    assert full["decoder/level0/block1/conv1/kernel"] == no_spatial["decoder/level0/block1/conv1/kernel"]


def test_dfv_volume_has_c_channels_where_dualfocus_has_2c():
    config = model_config("paper", "dualfocus")
    full = _shapes(config)
    dfv = _shapes(model_config("paper", "dfv"))
    c_coarse = config.volume_channels[0]
    assert full["decoder/level0/block1/conv1/kernel"][3] == 2 * c_coarse
    assert dfv["decoder/level0/block1/conv1/kernel"][3] == c_coarse
    # Finer levels: upsampled decoder features (half the previous width) plus the volume.
    for level in (2, 3):
        carried = config.decoder_channels[level - 1] // 2
        c = config.volume_channels[level]
        assert full[f"decoder/level{level}/block1/conv1/kernel"][3] == carried + 2 * c
        assert dfv[f"decoder/level{level}/block1/conv1/kernel"][3] == carried + c
    assert _shapes(model_config("paper", "fv")) == dfv


def test_no_focal_differs_only_in_the_loss_weight_and_projection():
    full = model_config("small", "dualfocus")
    no_focal = model_config("small", "no_focal")
    assert full.lambda_fv > 0 and full.project_unimodal_at_inference and full.use_focal
    assert no_focal.lambda_fv == 0 and not no_focal.project_unimodal_at_inference and not no_focal.use_focal
    assert _shapes(full) == _shapes(no_focal)
    ignored = {"variant", "lambda_fv", "project_unimodal_at_inference", "use_focal"}
    assert {k: v for k, v in full.to_dict().items() if k not in ignored} == \
        {k: v for k, v in no_focal.to_dict().items() if k not in ignored}


def test_solver_stride_moves_the_surfaces_to_that_level():
    base = _shapes(model_config("small", "no_spatial"))
    fine = _shapes(model_config("small", "dualfocus", solver_stride=4, solver="cg"))
    c2 = model_config("small").surface_channels
    assert fine["decoder/level3/block1/conv1/kernel"][3] == base["decoder/level3/block1/conv1/kernel"][3] + c2
    assert fine["decoder/level1/block1/conv1/kernel"] == base["decoder/level1/block1/conv1/kernel"]


def test_config_from_config_dict_and_errors():
    config_dict = ml_collections.ConfigDict(dict(size="paper", variant="no_spatial", tau_rel=0.25,
                                                 decoder_channels=[64, 64, 32, 32]))
    config = DualFocusConfig.from_config_dict(config_dict)
    assert config.size == "paper" and not config.use_spatial and config.tau_rel == 0.25
    assert config.decoder_channels == (64, 64, 32, 32) and config.encoder_widths == (64, 128, 256, 512)
    hash(config)  # a static jit argument must be hashable
    with pytest.raises(ValueError, match="unknown DualFocusConfig field"):
        model_config("small", tua_rel=0.5)
    with pytest.raises(ValueError, match="variant must be one of"):
        model_config("small", "dualfocus_plus")
    with pytest.raises(ValueError, match="size must be one of"):
        model_config("huge")
    with pytest.raises(ValueError, match="solver_stride"):
        model_config("small", solver_stride=2)
    with pytest.raises(ValueError, match="tau_rel"):
        model_config("small", tau_rel=0.0)
    with pytest.raises(ValueError, match="use_focal=False needs lambda_fv=0"):
        model_config("small", use_focal=False)


def test_configs_are_hashable_and_key_the_compiled_prediction():
    from dualfocus_jax.evaluation.evaluate import prediction_function

    listed = DualFocusConfig(level_weights=[0.5, 0.25, 0.125, 0.125], encoder_widths=[16, 32, 64, 96])
    tupled = DualFocusConfig(level_weights=(0.5, 0.25, 0.125, 0.125), encoder_widths=(16, 32, 64, 96))
    assert listed == tupled and hash(listed) == hash(tupled)
    # The same config gives the same jitted function (no new compilation per evaluation); another gives another.
    assert prediction_function(listed) is prediction_function(tupled)
    assert prediction_function(listed) is not prediction_function(listed, blur_linear_focus=True)
