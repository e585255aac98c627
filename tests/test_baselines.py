"""The trunk's baseline mixers (wavejax/nn/baselines.py: rope, local, linear), model.init_std and model.mixer = "none",
each checked against a plain formula."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from wavejax.models import build_model
from wavejax.nn.attention import causal_attention_reference
from wavejax.nn.baselines import rotary

from conftest import configs

synthetic = configs("synthetic")


def test_rotary_scores_depend_only_on_the_offset():
    rng = np.random.default_rng(0)
    q1, k1 = rng.standard_normal((2, 8))
    q = jnp.broadcast_to(jnp.asarray(q1, jnp.float32), (1, 12, 1, 8))
    k = jnp.broadcast_to(jnp.asarray(k1, jnp.float32), (1, 12, 1, 8))
    s = np.asarray(jnp.einsum("bthd,bshd->ts", rotary(q), rotary(k)))
    for offset in range(-5, 6):
        diag = np.diagonal(s, offset)
        np.testing.assert_allclose(diag, diag[0], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(rotary(q))[0, 0, 0], q1, rtol=1e-6)  # position 0 is not rotated
    norms = np.linalg.norm(np.asarray(rotary(q)), axis=-1)
    np.testing.assert_allclose(norms, np.linalg.norm(q1), rtol=1e-5)


def _model(attention, **model):
    c = synthetic.get_config(f"mqar+{attention}+tiny")
    c.model.block_size, c.data.synthetic.pairs = 24, 4
    for k, v in model.items():
        c.model[k] = v
    m = build_model(c.model, 64)
    x = jnp.asarray(np.random.default_rng(1).integers(0, 64, (2, 24)), jnp.int32)
    return m, m.init(jax.random.PRNGKey(0), x)["params"], x


@pytest.mark.parametrize("attention", ["dense", "rope", "local", "linear"])
def test_baselines_are_causal(attention):
    m, params, x = _model(attention)
    y = m.apply({"params": params}, x)
    x2 = x.at[:, 15:].set((x[:, 15:] + 7) % 64)
    y2 = m.apply({"params": params}, x2)
    np.testing.assert_array_equal(np.asarray(y[:, :15]), np.asarray(y2[:, :15]))
    assert not np.allclose(np.asarray(y[:, 15:]), np.asarray(y2[:, 15:]))


def test_rope_attention_is_dense_attention_on_rotated_queries_and_keys():
    rng = np.random.default_rng(2)
    q, k, v = (jnp.asarray(rng.standard_normal((2, 10, 2, 8)), jnp.float32) for _ in range(3))
    fast = jax.nn.dot_product_attention(rotary(q), rotary(k), v, is_causal=True)
    np.testing.assert_allclose(np.asarray(fast), np.asarray(causal_attention_reference(rotary(q), rotary(k), v)),
                               atol=1e-5)


def test_init_std_sets_the_weights_scale_and_mixer_none_drops_the_mlp():
    for std in (0.02, 0.25):
        _, params, _ = _model("dense", init_std=std)
        flat = {jax.tree_util.keystr(path): leaf for path, leaf in jax.tree_util.tree_leaves_with_path(params)}
        qkv = next(v for k, v in flat.items() if "['qkv']['kernel']" in k)
        assert abs(float(jnp.std(qkv)) - std) < 0.15 * std
        assert not any("mixer" in k for k in flat)
    _, params, _ = _model("dense", mixer="mlp")
    assert any("mixer" in jax.tree_util.keystr(path) for path, _ in jax.tree_util.tree_leaves_with_path(params))
