"""Loading a torchvision-named ResNet checkpoint (a fake .npz written here) into the encoder trunk."""

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dualfocus_jax.model import FAST_COMPILE_OPTIONS, abstract_params, load_torchvision_resnet18, model_config
from dualfocus_jax.model.resnet import ResNetTrunk


def _torchvision_state(stem, widths, blocks, rng):
    """A torchvision-style state_dict (PyTorch layouts) for a ResNet with BasicBlocks, written out by hand."""
    state = {}

    def conv(name, out_ch, in_ch, k):
        state[f"{name}.weight"] = rng.normal(scale=(2.0 / (in_ch * k * k)) ** 0.5, size=(out_ch, in_ch, k, k))

    def bn(name, ch):
        state[f"{name}.weight"] = rng.uniform(0.5, 1.5, ch)
        state[f"{name}.bias"] = rng.normal(scale=0.1, size=ch)
        state[f"{name}.running_mean"] = rng.normal(scale=0.1, size=ch)
        state[f"{name}.running_var"] = rng.uniform(0.5, 2.0, ch)
        state[f"{name}.num_batches_tracked"] = np.array(100)

    conv("conv1", stem, 3, 7)
    bn("bn1", stem)
    in_ch = stem
    for stage, (width, count) in enumerate(zip(widths, blocks), start=1):
        for index in range(count):
            prefix = f"layer{stage}.{index}"
            conv(f"{prefix}.conv1", width, in_ch, 3)
            bn(f"{prefix}.bn1", width)
            conv(f"{prefix}.conv2", width, width, 3)
            bn(f"{prefix}.bn2", width)
            if index == 0 and (stage > 1 or in_ch != width):
                conv(f"{prefix}.downsample.0", width, in_ch, 1)
                bn(f"{prefix}.downsample.1", width)
            in_ch = width
    state["fc.weight"] = rng.normal(size=(1000, in_ch))
    state["fc.bias"] = np.zeros(1000)
    return {k: np.asarray(v, np.float32) if v.ndim else v for k, v in state.items()}


def _numpy_trunk(x_NCHW, state, blocks):
    """Torch semantics (NCHW cross-correlation, eval BatchNorm, −inf max-pool padding), in NumPy."""

    def conv(x, name, stride, pad):
        w = state[f"{name}.weight"]
        x = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
        k = w.shape[-1]
        h_out = (x.shape[2] - k) // stride + 1
        w_out = (x.shape[3] - k) // stride + 1
        out = np.zeros((x.shape[0], w.shape[0], h_out, w_out))
        for i in range(k):
            for j in range(k):
                patch = x[:, :, i : i + stride * h_out : stride, j : j + stride * w_out : stride]
                out += np.einsum("nchw,oc->nohw", patch, w[:, :, i, j])
        return out

    def bn(x, name):
        g, b = state[f"{name}.weight"], state[f"{name}.bias"]
        m, v = state[f"{name}.running_mean"], state[f"{name}.running_var"]
        return (x - m[:, None, None]) / np.sqrt(v[:, None, None] + 1e-5) * g[:, None, None] + b[:, None, None]

    relu = lambda t: np.maximum(t, 0)  # noqa: E731
    x = relu(bn(conv(x_NCHW, "conv1", 2, 3), "bn1"))
    x = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)), constant_values=-np.inf)
    x = np.max([x[:, :, i : i + x.shape[2] - 2 : 2, j : j + x.shape[3] - 2 : 2] for i in range(3) for j in range(3)],
               axis=0)
    outputs = []
    for stage, count in enumerate(blocks, start=1):
        for index in range(count):
            prefix = f"layer{stage}.{index}"
            stride = 2 if (stage > 1 and index == 0) else 1
            y = relu(bn(conv(x, f"{prefix}.conv1", stride, 1), f"{prefix}.bn1"))
            y = bn(conv(y, f"{prefix}.conv2", 1, 1), f"{prefix}.bn2")
            if f"{prefix}.downsample.0.weight" in state:
                x = bn(conv(x, f"{prefix}.downsample.0", stride, 0), f"{prefix}.downsample.1")
            x = relu(x + y)
        outputs.append(x)
    return outputs


def test_fake_checkpoint_loads_and_reproduces_torch_features(tmp_path):
    config = model_config("small")
    state = _torchvision_state(config.stem_width, config.encoder_widths, config.encoder_blocks,
                               np.random.default_rng(0))
    path = tmp_path / "fake_resnet.npz"
    np.savez(path, **state)

    abstract = abstract_params(config)
    params = jax.tree.map(lambda leaf: jnp.zeros(leaf.shape, leaf.dtype), abstract)
    loaded = load_torchvision_resnet18(params, path)
    trunk = loaded["params"]["encoder"]["trunk"]
    np.testing.assert_array_equal(np.asarray(trunk["conv1"]["kernel"]), state["conv1.weight"].transpose(2, 3, 1, 0))
    scale = state["layer2.0.downsample.1.weight"] / np.sqrt(state["layer2.0.downsample.1.running_var"] + 1e-5)
    np.testing.assert_allclose(np.asarray(trunk["layer2_0"]["downsample_bn"]["scale"]), scale, rtol=1e-6)
    # Everything outside the trunk is untouched (still the zeros it was given).
    assert not np.any(np.asarray(loaded["params"]["decoder"]["level0"]["block1"]["conv1"]["kernel"]))

    image = np.random.default_rng(1).random((1, 64, 64, 3)).astype(np.float32)
    module = ResNetTrunk(config.stem_width, config.encoder_widths, config.encoder_blocks)
    apply = jax.jit(module.apply, compiler_options=FAST_COMPILE_OPTIONS)
    ours = apply({"params": trunk}, jnp.asarray(image))
    reference = _numpy_trunk(image.transpose(0, 3, 1, 2).astype(np.float64), state, config.encoder_blocks)
    assert [o.shape[1:3] for o in ours] == [(16, 16), (8, 8), (4, 4), (2, 2)]
    for got, want in zip(ours, reference):
        np.testing.assert_allclose(np.asarray(got), want.transpose(0, 2, 3, 1), rtol=1e-3, atol=1e-3)


def test_paper_trunk_has_exactly_resnet18_shapes():
    # The real torchvision resnet18: 20 convolutions and 20 BatchNorms; every one must fit the paper trunk.
    state = _torchvision_state(64, (64, 128, 256, 512), (2, 2, 2, 2), np.random.default_rng(2))
    assert sum(k.endswith(".weight") and state[k].ndim == 4 for k in state) == 20
    assert sum(k.endswith("running_var") for k in state) == 20
    params = abstract_params(model_config("paper", "dfv"))["params"]
    loaded = load_torchvision_resnet18(params, state)
    trunk = flax.traverse_util.flatten_dict(loaded["encoder"]["trunk"])
    assert len(trunk) == 20 + 2 * 20  # a kernel per convolution, scale and bias per BatchNorm
    assert sum(np.size(v) for v in trunk.values()) == 11_176_512  # resnet18 without fc and BN statistics


def test_checkpoint_errors_are_clear():
    config = model_config("small")
    params = abstract_params(config)
    state = _torchvision_state(config.stem_width, config.encoder_widths, config.encoder_blocks,
                               np.random.default_rng(3))
    missing = {k: v for k, v in state.items() if not k.startswith("layer3.0.bn2")}
    with pytest.raises(ValueError, match="layer3.0.bn2"):
        load_torchvision_resnet18(params, missing)
    paper_state = _torchvision_state(64, (64, 128, 256, 512), (2, 2, 2, 2), np.random.default_rng(4))
    with pytest.raises(ValueError, match="size='paper'"):
        load_torchvision_resnet18(params, paper_state)
    with pytest.raises(ValueError, match="does not exist"):
        load_torchvision_resnet18(params, "/nonexistent/resnet18.npz")
