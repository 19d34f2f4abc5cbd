"""config.model_init.imagenet_npz starts a new run's encoder trunk from torchvision ResNet-18 weights converted
to .npz (issue 14, item 4), the rest of the network as the seed draws it; a resumed run keeps its checkpoint.
The .npz here is fake: a torchvision-named state of the small model's trunk shapes (test_model_pretrained)."""

import os

import flax
import jax
import numpy as np
import pytest

from test_configs import load_with_flags
from test_model_pretrained import _torchvision_state
from test_train_data import prepare_tiny_focal

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tiny_run_config(data_dir, *extra):
    return load_with_flags([f"--config={REPO}/configs/demo.py:runlocal", f"--config.input.data_dir={data_dir}",
                            "--config.input.prepare_if_missing=False",
                            "--config.input.sources.synthetic_focal.dataset=tiny_focal",
                            "--config.input.sources.synthetic_focal.split=train", "--config.validation.dataset=",
                            "--config.train.total_steps=1", "--config.checkpoint.every_steps=1", *extra])


def flat(tree):
    tree = tree["params"] if "params" in tree else tree
    return {"/".join(path): np.asarray(leaf) for path, leaf in flax.traverse_util.flatten_dict(tree).items()}


def test_imagenet_npz_starts_the_encoder_trunk(tmp_path):
    from configs.common import base_config
    from dualfocus_jax.model import load_torchvision_resnet18
    from dualfocus_jax.training.checkpointing import restore_params
    from dualfocus_jax.training.train_state import initial_train_state, make_optimizer
    from dualfocus_jax.training.trainer import model_config_from, train_and_evaluate

    assert base_config().model_init.imagenet_npz == ""  # default: random initialisation
    data_dir = prepare_tiny_focal(tmp_path / "tfds")
    config = tiny_run_config(data_dir)
    model_config = model_config_from(config.model)
    npz = tmp_path / "resnet18_imagenet.npz"
    np.savez(npz, **_torchvision_state(model_config.stem_width, model_config.encoder_widths,
                                        model_config.encoder_blocks, np.random.default_rng(0)))
    # The demo's warm-up gives lr 0 at the first update, so the checkpoint of step 1 holds the initialisation.
    config = tiny_run_config(data_dir, f"--config.model_init.imagenet_npz={npz}")
    workdir = tmp_path / "run"
    train_and_evaluate(config, str(workdir), mode="train")
    trained, step = restore_params(str(workdir))
    assert step == 1
    random = initial_train_state(model_config, make_optimizer(config.optimizer, 1), jax.random.key(config.seed))
    expected = flat(load_torchvision_resnet18(random.params, str(npz)))
    random, trained = flat(random.params), flat(trained)
    trunk = [name for name in expected if name.startswith("encoder/trunk/")]
    assert trunk and len(trunk) < len(expected)
    for name, value in expected.items():
        np.testing.assert_allclose(trained[name], value, rtol=1e-6, atol=1e-7, err_msg=name)
        if name in trunk:
            assert not np.allclose(value, random[name]), name  # the trunk changed; the rest kept the seed's


def test_imagenet_npz_errors_are_one_message(tmp_path):
    from dualfocus_jax.training.trainer import train_and_evaluate

    data_dir = prepare_tiny_focal(tmp_path / "tfds")
    with pytest.raises(ValueError, match="does not exist"):
        train_and_evaluate(tiny_run_config(data_dir, f"--config.model_init.imagenet_npz={tmp_path}/missing.npz"),
                           str(tmp_path / "a"), mode="train")
    with pytest.raises(ValueError, match="checkpoint or imagenet_npz, not both"):
        train_and_evaluate(tiny_run_config(data_dir, f"--config.model_init.imagenet_npz={tmp_path}/x.npz",
                                           f"--config.model_init.checkpoint={tmp_path}"), str(tmp_path / "b"),
                           mode="train")
