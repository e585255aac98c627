"""The GPT trunk: shapes, parameter count, scan vs. unrolled layers, per-layer attention, causality,
the attention reference, bfloat16 compute and dropout."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax.core.meta import unbox

from wavejax.analysis.flops import count_params
from wavejax.config import validate
from wavejax.models.gpt import build_model, init_params, segments
from wavejax.nn import attention, registry

from conftest import configs

baseline = configs("baseline")

VOCAB = 65
B, T = 2, 16


def small_model_config(**kw):
    c = baseline.get_config("tiny").model
    c.update(dict(n_layer=2, n_head=2, d_model=32, block_size=T, dropout=0.0))
    c.update(kw)
    return c


def _tokens(seed=0, batch=B, length=T):
    return np.random.default_rng(seed).integers(0, VOCAB, (batch, length)).astype(np.int32)  # numpy: no eager jax op to compile


@pytest.fixture(scope="module")
def small():
    model = build_model(small_model_config(), VOCAB)
    params = init_params(model, jax.random.PRNGKey(0), T)
    return model, params


@pytest.fixture(scope="module")
def apply_small(small):
    model, _ = small
    return jax.jit(lambda p, x: model.apply({"params": p}, x, True))


def test_logits_shape_and_dtype(small, apply_small):
    model, params = small
    logits = apply_small(params, _tokens())
    assert logits.shape == (B, T, VOCAB)
    assert logits.dtype == jnp.float32
    assert bool(jnp.all(jnp.isfinite(logits)))
    # a shorter sequence works too (positions are sliced, not fixed to block_size)
    assert jax.eval_shape(lambda: model.apply({"params": params}, _tokens(length=5), True)).shape == (B, 5, VOCAB)


def test_baseline_parameter_count_is_nanogpt():
    c = baseline.get_config()
    model = build_model(c.model, VOCAB)
    shapes = jax.eval_shape(lambda: init_params(model, jax.random.PRNGKey(0), c.model.block_size))
    L, d = c.model.n_layer, c.model.d_model
    assert count_params(shapes) == 10_745_088
    assert count_params(shapes) == 12 * L * d * d + 2 * L * d + d + (VOCAB + c.model.block_size) * d
    # the scanned stack stores one stacked copy of the block weights
    assert shapes["seg0"]["block"]["attn"]["proj"]["qkv"]["kernel"].shape == (L, d, 3 * d)


def _unstack(scanned_params, n_layer):
    """Params of a scanned model -> the same weights in the unrolled layout."""
    out = {k: v for k, v in scanned_params.items() if k != "seg0"}
    for j in range(n_layer):
        out[f"seg0_{j}"] = jax.tree.map(lambda a: a[j], scanned_params["seg0"]["block"])
    return out


def test_scan_and_unrolled_layers_agree(small, apply_small):
    model, params = small
    unrolled = build_model(small_model_config(scan_layers=False), VOCAB)
    remapped = _unstack(params, 2)
    shapes = jax.eval_shape(lambda: init_params(unrolled, jax.random.PRNGKey(0), T))
    assert jax.tree.structure(shapes) == jax.tree.structure(remapped)
    x = _tokens(1)
    a = apply_small(params, x)
    apply_unrolled = jax.jit(lambda p, x: unrolled.apply({"params": p}, x, True))
    b = apply_unrolled(remapped, x)
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5, rtol=1e-5)
    # the layers really differ, so a remap that mixed them up would have failed
    assert not np.allclose(remapped["seg0_0"]["mixer"]["up"]["kernel"], remapped["seg0_1"]["mixer"]["up"]["kernel"])
    swapped = dict(remapped, seg0_0=remapped["seg0_1"], seg0_1=remapped["seg0_0"])
    c = apply_unrolled(swapped, x)
    assert np.abs(np.asarray(a) - np.asarray(c)).max() > 1e-4


@pytest.mark.parametrize("unroll", [1, 2])
def test_scan_unroll_changes_the_loop_not_the_model(small, apply_small, unroll):
    """model.scan_unroll = 0 (auto: the whole segment on a CPU) against 1 (one layer per iteration, the GPU
    default) and 2: the same parameter tree and the same logits."""
    from wavejax.models.gpt import scan_unroll

    model, params = small
    assert scan_unroll(model.config, 2) == (2 if jax.default_backend() == "cpu" else 1)
    other = build_model(small_model_config(scan_unroll=unroll), VOCAB)
    assert scan_unroll(other.config, 2) == unroll
    shapes = jax.eval_shape(lambda: init_params(other, jax.random.PRNGKey(0), T))
    assert jax.tree.structure(shapes) == jax.tree.structure(params)
    x = _tokens(3)
    b = jax.jit(lambda p, x: other.apply({"params": p}, x, True))(params, x)
    np.testing.assert_allclose(np.asarray(apply_small(params, x)), np.asarray(b), atol=1e-5, rtol=1e-5)


def test_gelu_is_the_exact_gelu():
    """The MLP's erf form of GELU equals jax.nn.gelu(approximate=False) (the erfc form) to float32 rounding, and its
    gradient checks in float64."""
    from jax.test_util import check_grads

    from wavejax.nn.mlp import gelu

    x = jnp.linspace(-12.0, 12.0, 4001, dtype=jnp.float32)
    # 1 + erf(x / sqrt 2) rounds to float32 before the product: an absolute error up to |x| * 2^-24 where Φ(x) is tiny
    np.testing.assert_allclose(np.asarray(gelu(x)), np.asarray(jax.nn.gelu(x, approximate=False)), rtol=2e-6,
                               atol=float(12.0 * 2.0**-24))
    with jax.enable_x64(True):
        x64 = jnp.linspace(-4.0, 4.0, 33, dtype=jnp.float64)
        np.testing.assert_allclose(np.asarray(gelu(x64)), np.asarray(jax.nn.gelu(x64, approximate=False)), rtol=1e-13,
                                   atol=1e-15)
        check_grads(gelu, (x64,), order=2, modes=("fwd", "rev"))


def test_dense_flattens_its_input_and_keeps_nn_dense_parameters():
    """init.dense runs nn.Dense on the input flattened to [N, features]: same parameter tree and outputs as nn.Dense
    on the [B, T, features] input, and a 1-D input still works."""
    from wavejax.nn import init

    x = jax.random.normal(jax.random.PRNGKey(1), (3, 5, 8))
    ours = init.dense(6, ("embed", "mlp"), name="up")
    params = ours.init(jax.random.PRNGKey(0), x)
    plain = nn.Dense(6, name="up")
    assert jax.tree.structure(unbox(params)) == jax.tree.structure(plain.init(jax.random.PRNGKey(0), x))
    np.testing.assert_allclose(np.asarray(ours.apply(params, x)), np.asarray(plain.apply(unbox(params), x)),
                               rtol=1e-6, atol=1e-6)
    assert ours.apply(params, x[0, 0]).shape == (6,)


class _NoAttention(nn.Module):
    """A stand-in attention for the override test: returns zeros and has one marker parameter."""

    config: object

    @nn.compact
    def __call__(self, x, deterministic=True):
        return x * self.param("marker", nn.initializers.zeros, ())


def test_layer_attention_override_builds_per_layer(monkeypatch):
    monkeypatch.setitem(registry.ATTENTIONS, "none_for_test", lambda config, name=None: _NoAttention(config, name=name))
    c = small_model_config(n_layer=3, layer_attention=("dense", "dense", "none_for_test"))
    full = baseline.get_config("tiny")
    full.model = c
    validate(full)
    assert segments(c) == [("dense", 2), ("none_for_test", 1)]
    model = build_model(c, VOCAB)
    logits, variables = jax.jit(lambda r, x: model.init_with_output({"params": r}, x, True))(jax.random.PRNGKey(0), _tokens())
    params = unbox(variables["params"])
    assert params["seg0"]["block"]["attn"]["proj"]["qkv"]["kernel"].shape == (2, 32, 96)  # two scanned dense layers
    assert set(params["seg1_0"]["attn"]) == {"marker"}  # the third layer got the override
    assert logits.shape == (B, T, VOCAB) and bool(jnp.all(jnp.isfinite(logits)))


def test_changing_a_token_changes_only_later_logits(small, apply_small):
    _, params = small
    x = _tokens(2)
    t = 7
    y = x.copy()
    y[:, t] = (x[:, t] + 1) % VOCAB
    a, b = np.asarray(apply_small(params, x)), np.asarray(apply_small(params, y))
    np.testing.assert_array_equal(a[:, :t], b[:, :t])
    assert np.abs(a[:, t:] - b[:, t:]).max(axis=-1).min() > 1e-6  # every later position sees the change


@pytest.mark.parametrize("shape", [(2, 16, 2, 8), (1, 33, 4, 16)])
def test_causal_attention_reference_matches_dot_product_attention(shape):
    q, k, v = np.random.default_rng(3).standard_normal((3, *shape), dtype=np.float32)
    ref, fast = jax.jit(lambda q, k, v: (attention.causal_attention_reference(q, k, v),
                                         jax.nn.dot_product_attention(q, k, v, is_causal=True)))(q, k, v)
    np.testing.assert_allclose(np.asarray(ref), np.asarray(fast), atol=1e-5, rtol=1e-5)
    # the first query sees only the first key: its output is v[:, 0]
    np.testing.assert_allclose(np.asarray(ref[:, 0]), np.asarray(v[:, 0]), atol=1e-6)


def test_attention_reference_dropout():
    q, k, v = np.random.default_rng(4).standard_normal((3, 2, 8, 2, 4), dtype=np.float32)

    @jax.jit
    def run(rng):
        ref = attention.causal_attention_reference
        return ref(q, k, v), ref(q, k, v, rng, 0.0), ref(q, k, v, rng, 0.5)

    plain, rate_zero, dropped = (np.asarray(a) for a in run(jax.random.PRNGKey(0)))
    np.testing.assert_array_equal(rate_zero, plain)
    assert np.abs(dropped - plain).max() > 1e-3


def test_bfloat16_compute_keeps_float32_params(small, apply_small):
    _, params32 = small
    model16 = build_model(small_model_config(dtype="bfloat16"), VOCAB)
    params16 = jax.eval_shape(lambda: init_params(model16, jax.random.PRNGKey(0), T))
    assert {x.dtype for x in jax.tree.leaves(params16)} == {jnp.dtype(jnp.float32)}
    x = _tokens(5)
    logits16 = jax.jit(lambda p, x: model16.apply({"params": p}, x, True))(params32, x)
    logits32 = apply_small(params32, x)
    assert logits16.dtype == jnp.float32
    assert bool(jnp.all(jnp.isfinite(logits16)))
    err = float(jnp.abs(logits16 - logits32).max())
    scale = float(jnp.abs(logits32).max())
    assert 0 < err < 0.05 * scale, (err, scale)  # bf16 really ran, and stayed close


def test_dropout_only_when_not_deterministic(small, apply_small):
    _, params = small
    model = build_model(small_model_config(dropout=0.5, attn_dropout=0.3), VOCAB)
    x = _tokens(6)

    @jax.jit
    def run(params, rng):  # (eval, train) outputs with the same dropout key
        apply = lambda det: model.apply({"params": params}, x, det, rngs={"dropout": rng})  # noqa: E731
        return apply(True), apply(False)

    eval_a, train_a = (np.asarray(o) for o in run(params, jax.random.PRNGKey(1)))
    eval_b, train_b = (np.asarray(o) for o in run(params, jax.random.PRNGKey(2)))
    np.testing.assert_array_equal(eval_a, eval_b)
    np.testing.assert_allclose(eval_a, np.asarray(apply_small(params, x)), atol=1e-6)  # eval == the dropout-free model
    assert np.abs(train_a - train_b).max() > 1e-3
    assert np.abs(train_a - eval_a).max() > 1e-3
    np.testing.assert_array_equal(train_a, np.asarray(run(params, jax.random.PRNGKey(1))[1]))


# -- trunk hooks: layer outputs, cross-layer coupling, heads, objectives ----------------------------------------------

def _apply_collecting(model, params, x):
    return model.apply({"params": params}, x, True, mutable=["layer_outputs"])


def test_layer_outputs_in_order_scanned_and_unrolled(small):
    from wavejax.models.gpt import layer_outputs_in_order

    model, params = small
    unrolled = build_model(small_model_config(scan_layers=False), VOCAB)
    x = _tokens(2)
    logits, var_s = jax.jit(lambda p: _apply_collecting(model, p, x))(params)
    _, var_u = jax.jit(lambda p: _apply_collecting(unrolled, p, x))(_unstack(params, 2))
    hs, hu = layer_outputs_in_order(var_s["layer_outputs"], model.config), layer_outputs_in_order(var_u["layer_outputs"], unrolled.config)
    assert len(hs) == len(hu) == 3  # embedding output, then one per layer
    for a, b in zip(hs, hu):
        assert a.shape == (B, T, 32)
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5)
    # the last output is what the final LayerNorm and the tied head see
    ln_f = nn.LayerNorm(epsilon=1e-5, use_bias=False)
    wte = params["embed"]["wte"]["embedding"]
    expected = ln_f.apply({"params": params["ln_f"]}, hs[-1]) @ wte.T
    np.testing.assert_allclose(np.asarray(logits), np.asarray(expected), atol=1e-4)


def test_coupling_sources():
    from wavejax.nn.coupling import coupling_sources

    assert coupling_sources("none", 3) == [(), (), ()]
    assert coupling_sources("all", 4) == [(), (0,), (0, 1), (0, 1, 2)]
    assert coupling_sources("report", 4) == [(), (), (1,), ()]
    assert coupling_sources("report", 12)[8] == (0, 7) and coupling_sources("report", 12)[4] == (3,)
    assert coupling_sources("report", 12)[10] == (2, 9)


def test_coupled_stack_starts_as_the_plain_trunk_and_couples_once_strength_moves(small):
    model, params = small
    coupled = build_model(small_model_config(layer_coupling="all"), VOCAB)
    cparams = unbox(jax.jit(lambda r: coupled.init(r, _tokens(), True))(jax.random.PRNGKey(0))["params"])
    assert set(cparams) == {"embed", "seg0_0", "seg0_1", "ln_f"}
    assert "coupling" not in cparams["seg0_0"] and cparams["seg0_1"]["coupling"]["strength"].shape == (1,)
    # copy the plain model's weights in: with strength 0 the output is the plain model's
    same = _unstack(params, 2)
    same["seg0_1"] = dict(same["seg0_1"], coupling=cparams["seg0_1"]["coupling"])
    x = _tokens(3)
    apply_c = jax.jit(lambda p: coupled.apply({"params": p}, x, True))
    np.testing.assert_allclose(np.asarray(apply_c(same)), np.asarray(model.apply({"params": params}, x, True)), atol=1e-5)
    moved = jax.tree.map(lambda a: a, same)
    moved["seg0_1"]["coupling"]["strength"] = jnp.ones((1,))
    assert np.abs(np.asarray(apply_c(moved)) - np.asarray(apply_c(same))).max() > 1e-4
    # and the coupled model stays causal
    changed = x.copy()
    changed[:, 10:] = (changed[:, 10:] + 1) % VOCAB
    np.testing.assert_allclose(np.asarray(apply_c(moved))[:, :10],
                               np.asarray(jax.jit(lambda p: coupled.apply({"params": p}, changed, True))(moved))[:, :10], atol=1e-5)


def test_linear_head_without_final_norm():
    model = build_model(small_model_config(head="linear", final_norm=False), VOCAB)
    shapes = jax.eval_shape(lambda: init_params(model, jax.random.PRNGKey(0), T))
    assert "ln_f" not in shapes and shapes["head"]["out"]["kernel"].shape == (32, VOCAB)
    out = jax.eval_shape(lambda p: model.apply({"params": p}, _tokens(), True), shapes)
    assert out.shape == (B, T, VOCAB) and out.dtype == jnp.float32


@pytest.mark.parametrize("key,value,message", [
    ("model.head", "nope", "model.head 'nope' is unknown"),
    ("model.selector", "nope", "model.selector 'nope' is unknown"),
    ("model.layer_coupling", "some", "model.layer_coupling must be one of"),
    ("model.scan_unroll", -1, "model.scan_unroll must be >= 0"),
    ("train.loss", "nope", "train.loss 'nope' is unknown"),
])
def test_trunk_options_are_checked(key, value, message):
    from wavejax.config import set_value
    from wavejax.errors import ConfigError

    c = baseline.get_config("tiny")
    set_value(c, key, value)
    with pytest.raises(ConfigError, match=message):
        validate(c)


def test_registered_objective_gets_the_collections_it_asks_for(monkeypatch):
    """An objective registered with collections=("layer_outputs",) receives every block output, and its extra term
    lands in aux_loss (the reported loss stays the cross-entropy)."""
    from wavejax.models.gpt import layer_outputs_in_order
    from wavejax.nn import objectives as losses
    from wavejax.train.step import make_loss_fn

    seen = {}

    def extra(logits, targets, variables, model_config, train_config):
        hs = layer_outputs_in_order(variables["layer_outputs"], model_config)
        seen["n"] = len(hs)
        value = sum(jnp.mean(h ** 2) for h in hs)
        return value, {"energy": value}

    monkeypatch.setitem(losses.LOSSES, "test_energy", losses.Objective(extra, ("layer_outputs",)))
    c = baseline.get_config("tiny")
    c.model.update(small_model_config())
    c.train.loss = "test_energy"
    model = build_model(c.model, VOCAB)
    params = init_params(model, jax.random.PRNGKey(0), T)
    x, y = _tokens(4), _tokens(5)
    total, (ce, aux, diag) = make_loss_fn(model, c.train)(params, x, y, jax.random.PRNGKey(1))
    ce_only, (ce2, aux2, _) = make_loss_fn(model)(params, x, y, jax.random.PRNGKey(1))
    assert seen["n"] == 3
    assert float(aux2) == 0.0 and float(aux) > 0 and abs(float(ce) - float(ce2)) < 1e-6
    np.testing.assert_allclose(float(total), float(ce) + float(aux), rtol=1e-6)
    np.testing.assert_allclose(float(diag["objective/energy"]), float(aux), rtol=1e-6)
