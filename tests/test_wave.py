"""Wave-Native GPT parts (wavejax/models/wave.py, wavejax/ops/wave_attention.py, configs/wave.py; spec docs/specs/wave_native.md).

1. every attention op against an independent float64 numpy computation; the blockwise interference attention and the
   chunked linear attention against their T x T references (values and gradients);
2. causality of every attention variant (changing inputs after position i leaves outputs <= i unchanged), and of
   whole tiny models with each embedding;
3. float64 check_grads of both embeddings and of the blockwise interference attention;
4. the embeddings, MLP activation and collapse head against numpy formulas; the physics embedding's fixed tables,
   annealing mix and faithful r = 0 evaluation;
5. parameter counts of the published models (15,433,657 wave, 15,081,216 classic at V = 1024);
6. config checks and presets.
"""

from __future__ import annotations

import math

import chex
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax.core.meta import unbox
from jax.test_util import check_grads

from wavejax.analysis.flops import count_params
from wavejax.config import validate
from wavejax.errors import ConfigError
from wavejax.models import wave
from wavejax.models.gpt import build_model
from wavejax.nn import registry
from wavejax.ops import wave_attention as A

from conftest import assert_one_error_line, configs, run_module

wave_configs = configs("wave")

TWO_PI = 2 * math.pi


def normal(seed: int, shape, scale: float = 1.0, dtype=np.float32):
    return jnp.asarray(scale * np.random.default_rng(seed).standard_normal(shape), dtype)


def model_config(arg: str = "tiny", **wave_overrides) -> ml_collections.FrozenConfigDict:
    c = wave_configs.get_config(arg).model
    for key, value in wave_overrides.items():
        c.wave[key] = value
    return ml_collections.FrozenConfigDict(c)


# == 1. attention ops ================================================================================================

def _numpy_interference(omega, phase, amp, normalize: bool):
    """alpha by explicit loops over (q, k) in float64, straight from the formula (spec §4.2)."""
    om, ph, a = (np.asarray(x, np.float64) for x in (omega, phase, amp))
    b, h, t, _ = om.shape
    alpha = np.zeros((b, h, t, t))
    for q in range(t):
        for k in range(q + 1):
            arg = (om[:, :, q] - om[:, :, k]) * (q - k) + ph[:, :, q] - ph[:, :, k]
            inten = np.sum(a[:, :, q] ** 2 + a[:, :, k] ** 2 + 2 * a[:, :, q] * a[:, :, k] * np.cos(arg), axis=-1)
            energy = np.sum((a[:, :, q] + a[:, :, k]) ** 2, axis=-1)
            alpha[:, :, q, k] = inten / (energy + 1e-8)
    if normalize:
        alpha = alpha / alpha.sum(-1, keepdims=True)
    return alpha


def _interference_inputs(seed: int, shape, d: int = 4, dtype=np.float32):
    b, h, t, w = shape
    omega = normal(seed, shape, 0.7, dtype)
    phase = normal(seed + 1, shape, 1.5, dtype)
    amp = jax.nn.softplus(normal(seed + 2, shape, 1.0, dtype)) + A.INTERFERENCE_EPS
    v = normal(seed + 3, (b, h, t, d), 1.0, dtype)
    return omega, phase, amp, v


@pytest.mark.parametrize("normalize", [False, True])
def test_interference_reference_matches_numpy_loop(normalize):
    omega, phase, amp, v = _interference_inputs(0, (2, 2, 7, 3))
    alpha = np.asarray(A.interference_weights_reference(omega, phase, amp))
    want = _numpy_interference(omega, phase, amp, normalize=False)
    np.testing.assert_allclose(alpha, want, atol=1e-6)
    # alpha in [0, 1], exactly 1 on the diagonal, 0 above it (spec: "it cannot exceed 1")
    assert alpha.min() >= 0 and alpha.max() <= 1 + 1e-6
    np.testing.assert_allclose(np.diagonal(alpha, axis1=-2, axis2=-1), 1.0, atol=1e-6)
    assert np.all(np.triu(alpha[0, 0], 1) == 0)
    out = A.interference_attention_reference(omega, phase, amp, v, normalize)
    np.testing.assert_allclose(out, _numpy_interference(omega, phase, amp, normalize) @ np.asarray(v, np.float64),
                               atol=2e-5)


def test_unnormalised_interference_rows_grow_with_position():
    """The original's alpha has no row normalisation, so the output scale grows with position (spec §4.2)."""
    omega, phase, amp, _ = _interference_inputs(3, (1, 2, 64, 4))
    rows = np.asarray(A.interference_weights_reference(omega, phase, amp)).sum(-1)  # [B,H,T]
    assert rows[..., 0].max() == pytest.approx(1.0, abs=1e-6)
    assert rows[..., -1].min() > 10  # 64 keys with mean alpha well above 1/64


_blockwise = jax.jit(A.interference_attention, static_argnames=("normalize", "block_size"))
_block_ref = jax.jit(A.interference_attention_reference, static_argnames=("normalize",))


@pytest.mark.parametrize("normalize", [False, True])
@pytest.mark.parametrize("block", [1, 4, 5, 16, 100])
def test_blockwise_interference_equals_reference(block, normalize):
    omega, phase, amp, v = _interference_inputs(10, (2, 3, 16, 5), d=6)
    ref = _block_ref(omega, phase, amp, v, normalize=normalize)
    out = _blockwise(omega, phase, amp, v, normalize=normalize, block_size=block)
    assert out.shape == ref.shape == (2, 3, 16, 6)
    np.testing.assert_allclose(out, ref, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("normalize", [False, True])
def test_blockwise_interference_gradients_equal_reference(normalize):
    omega, phase, amp, v = _interference_inputs(20, (1, 2, 11, 3), d=4)
    weights = normal(25, (1, 2, 11, 4))

    def loss(fn, *args):
        return jnp.sum(weights * fn(*args))

    ref = jax.jit(jax.grad(lambda *a: loss(lambda *b: A.interference_attention_reference(*b, normalize), *a),
                           argnums=(0, 1, 2, 3)))(omega, phase, amp, v)
    got = jax.jit(jax.grad(lambda *a: loss(lambda *b: A.interference_attention(*b, normalize=normalize, block_size=4),
                                           *a), argnums=(0, 1, 2, 3)))(omega, phase, amp, v)
    for g, r in zip(got, ref):
        np.testing.assert_allclose(g, r, atol=2e-5, rtol=1e-4)


def test_interference_dropout_is_unbiased():
    """Dropout on alpha (folded per key block): draws differ, and their mean is the dropout-free output (5 s.e.)."""
    omega, phase, amp, v = _interference_inputs(30, (1, 2, 16, 4), d=4)
    ref = np.asarray(A.interference_attention(omega, phase, amp, v, normalize=True, block_size=8))
    draws = np.asarray(jax.jit(jax.vmap(lambda key: A.interference_attention(
        omega, phase, amp, v, normalize=True, block_size=8, dropout_rng=key, dropout_rate=0.5)))(
        jax.random.split(jax.random.PRNGKey(0), 256)))
    assert np.abs(draws[0] - ref).max() > 1e-2 and np.abs(draws[0] - draws[1]).max() > 1e-2
    se = draws.std(0) / np.sqrt(len(draws))
    assert np.all(np.abs(draws.mean(0) - ref) <= 5 * se + 1e-6)


def _numpy_pure_quadratic(q, k, v, scale, kernel: str):
    q, k, v = (np.asarray(x, np.float64) for x in (q, k, v))
    fn = {"elu_plus_one": lambda s: np.where(s > 0, s, np.expm1(s)) + 1, "sigmoid": lambda s: 1 / (1 + np.exp(-s)),
          "exp": np.exp}[kernel]
    t = q.shape[2]
    s = np.einsum("bhqw,bhkw->bhqk", q, k) * np.asarray(scale, np.float64)[None]
    a = np.where(np.tril(np.ones((t, t), bool)), fn(s), 0.0) / np.sqrt(np.arange(1, t + 1))[:, None]
    return a @ v


@pytest.mark.parametrize("kernel", sorted(A.KERNELS))
def test_pure_wave_quadratic_matches_numpy(kernel):
    freq, phase = normal(40, (2, 2, 9, 6), 0.5), normal(41, (2, 2, 9, 6), 2.0)
    q = A.pure_wave_features(freq, phase)
    k = A.pure_wave_features(normal(42, (2, 2, 9, 6), 0.5), phase)
    # features: W^(1/4) normalise(sin(f t + p)) -> each row has norm W^(1/4)
    np.testing.assert_allclose(np.linalg.norm(np.asarray(q), axis=-1), 6 ** 0.25, rtol=1e-5)
    t = np.arange(9)[:, None]
    want_q = np.sin(np.asarray(freq, np.float64) * t + np.asarray(phase, np.float64))
    want_q = want_q / np.linalg.norm(want_q, axis=-1, keepdims=True) * 6 ** 0.25
    np.testing.assert_allclose(q, want_q, atol=1e-5)
    v, scale = normal(43, (2, 2, 9, 3)), jnp.asarray([[[0.7]], [[1.3]]], jnp.float32)
    np.testing.assert_allclose(A.pure_wave_quadratic(q, k, v, scale, kernel),
                               _numpy_pure_quadratic(q, k, v, scale, kernel), atol=1e-5, rtol=1e-5)


_linear = jax.jit(A.pure_wave_linear, static_argnames=("kernel", "chunk_size"))


@pytest.mark.parametrize("kernel", sorted(A.KERNELS))
@pytest.mark.parametrize("chunk", [1, 4, 7, 64])
def test_linear_pure_wave_equals_its_quadratic_form(kernel, chunk):
    """The chunked O(T) scan and the T x T form compute the same normalised causal linear attention."""
    q = A.pure_wave_features(normal(50, (2, 2, 21, 5), 0.5), normal(51, (2, 2, 21, 5), 2.0))
    k = A.pure_wave_features(normal(52, (2, 2, 21, 5), 0.5), normal(53, (2, 2, 21, 5), 2.0))
    v = normal(54, (2, 2, 21, 3))
    ref = A.pure_wave_linear_reference(q, k, v, kernel)
    np.testing.assert_allclose(_linear(q, k, v, kernel=kernel, chunk_size=chunk), ref, atol=1e-5, rtol=1e-5)
    # and the reference is what the formula says: phi(q).phi(k) over the prefix, normalised (float64 numpy)
    phi = {"elu_plus_one": lambda s: np.where(s > 0, s, np.expm1(s)) + 1, "sigmoid": lambda s: 1 / (1 + np.exp(-s)),
           "exp": np.exp}[kernel]
    pq, pk = phi(np.asarray(q, np.float64)), phi(np.asarray(k, np.float64))
    a = np.tril(np.ones((21, 21))) * np.einsum("bhqw,bhkw->bhqk", pq, pk)
    np.testing.assert_allclose(ref, (a @ np.asarray(v, np.float64)) / (a.sum(-1, keepdims=True) + 1e-6), atol=1e-5)


def test_cosine_attention_matches_numpy():
    q, k, v = normal(60, (2, 2, 8, 5)), normal(61, (2, 2, 8, 5)), normal(62, (2, 2, 8, 3))
    tau = 0.4
    qh = np.asarray(q, np.float64) / np.linalg.norm(np.asarray(q, np.float64), axis=-1, keepdims=True)
    kh = np.asarray(k, np.float64) / np.linalg.norm(np.asarray(k, np.float64), axis=-1, keepdims=True)
    s = np.einsum("bhqw,bhkw->bhqk", qh, kh) / tau
    s = np.where(np.tril(np.ones((8, 8), bool)), s, -np.inf)
    p = np.exp(s - s.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    np.testing.assert_allclose(A.cosine_attention_reference(q, k, v, tau), p @ np.asarray(v, np.float64), atol=1e-5)


# == 2. causality =====================================================================================================

ATTENTION_VARIANTS = {
    "cosine": ("wave_cosine", {}),
    "interference": ("wave_interference", {}),
    "interference_faithful": ("wave_interference", {"seed_faithful": True}),
    "pure_elu": ("wave_pure", {"pure_kernel": "elu_plus_one"}),
    "pure_sigmoid": ("wave_pure", {"pure_kernel": "sigmoid"}),
    "pure_exp": ("wave_pure", {"pure_kernel": "exp"}),
    "pure_elu_linear": ("wave_pure", {"pure_kernel": "elu_plus_one", "pure_mode": "linear"}),
    "pure_exp_linear": ("wave_pure", {"pure_kernel": "exp", "pure_mode": "linear"}),
}


@pytest.mark.parametrize("variant", sorted(ATTENTION_VARIANTS))
def test_every_attention_variant_is_causal(variant):
    name, overrides = ATTENTION_VARIANTS[variant]
    config = model_config(interference_block=5, linear_chunk=5, **overrides)  # several blocks, the last one padded
    layer = registry.ATTENTIONS[name](config)
    x = normal(70, (2, 12, config.d_model))
    params = jax.jit(layer.init)(jax.random.PRNGKey(0), x)
    apply = jax.jit(lambda p, inp: layer.apply(p, inp, True))
    y = np.asarray(apply(params, x))
    assert np.all(np.isfinite(y)) and np.abs(y).max() > 1e-4
    for i in (0, 4, 9):
        changed = np.asarray(x).copy()
        changed[:, i + 1:] = np.asarray(normal(71 + i, changed[:, i + 1:].shape))
        y2 = np.asarray(apply(params, jnp.asarray(changed)))
        np.testing.assert_allclose(y2[:, : i + 1], y[:, : i + 1], atol=1e-5,
                                   err_msg=f"{variant}: position {i} saw the future")
        assert np.abs(y2[:, i + 1:] - y[:, i + 1:]).max() > 1e-4  # and later positions do react


def test_linear_mode_is_reachable_and_differs_from_quadratic():
    """The original ignored pure_wave_mode; here the config reaches the linear attention (and faithful ignores it)."""
    x = normal(72, (1, 10, 64))
    outs = {}
    for label, overrides in {"quadratic": {}, "linear": {"pure_mode": "linear"},
                             "linear_faithful": {"pure_mode": "linear", "seed_faithful": True}}.items():
        layer = registry.ATTENTIONS["wave_pure"](model_config(**overrides))
        params = jax.jit(layer.init)(jax.random.PRNGKey(1), x)
        y, state = jax.jit(lambda p: layer.apply(p, x, True, mutable=["intermediates"]))(params)
        weights = np.asarray(state["intermediates"]["weights"][0])
        outs[label] = (np.asarray(y), weights)
    np.testing.assert_allclose(outs["linear"][1].sum(-1), 1.0, atol=1e-5)  # linear: rows sum to 1
    np.testing.assert_allclose(outs["linear_faithful"][0], outs["quadratic"][0], atol=1e-6)  # faithful: quadratic
    assert np.abs(outs["linear"][0] - outs["quadratic"][0]).max() > 1e-3


@pytest.mark.parametrize("embedding,attention", [("wave_packet", "wave_interference"), ("wave_physics", "wave_cosine")])
def test_tiny_models_are_causal(embedding, attention):
    c = wave_configs.get_config("tiny")
    c.model.embedding, c.model.attention = embedding, attention
    c.model.block_size, c.model.wave.interference_block = 16, 6
    model = build_model(c.model, 65)
    tokens = np.random.default_rng(80).integers(0, 65, (2, 16)).astype(np.int32)
    params = unbox(jax.jit(lambda key: model.init(key, jnp.asarray(tokens), True))(jax.random.PRNGKey(0))["params"])
    apply = jax.jit(lambda x: model.apply({"params": params}, x, True))
    logits = np.asarray(apply(tokens))
    assert logits.shape == (2, 16, 65) and logits.dtype == np.float32
    changed = tokens.copy()
    changed[:, 7:] = (changed[:, 7:] + 1) % 65
    logits2 = np.asarray(apply(changed))
    np.testing.assert_allclose(logits2[:, :7], logits[:, :7], atol=1e-5)
    assert np.abs(logits2[:, 7:] - logits[:, 7:]).max() > 1e-4


# == 3. gradients =====================================================================================================

@pytest.mark.parametrize("normalize", [False, True])
def test_check_grads_blockwise_interference_float64(normalize):
    with jax.enable_x64(True):
        omega, phase, _, v = _interference_inputs(90, (1, 2, 7, 3), d=2, dtype=np.float64)
        amp_raw = normal(93, (1, 2, 7, 3), 1.0, np.float64)
        weights = normal(94, (1, 2, 7, 2), 1.0, np.float64)

        def f(om, ph, ar, vv):
            amp = jax.nn.softplus(ar) + A.INTERFERENCE_EPS
            return jnp.sum(weights * A.interference_attention(om, ph, amp, vv, normalize=normalize, block_size=3))

        assert jax.jit(f)(omega, phase, amp_raw, v).dtype == jnp.float64
        check_grads(jax.jit(f), (omega, phase, amp_raw, v), order=1, modes=("fwd", "rev"))


@pytest.mark.parametrize("embedding", ["wave_packet", "wave_physics"])
def test_check_grads_embedding_float64(embedding):
    """d(output)/d(params) of the whole embedding (gathers, sin/cos features, projection, gate, LayerNorm) in float64.
    The physics embedding's annealing ratio is read through stop_gradient (the optimizer sets it), so it is held
    fixed at 0.3 here rather than checked."""
    c = wave_configs.get_config("tiny").model
    c.d_model, c.wave.num_waves, c.wave.num_harmonics, c.dtype = 8, 3, 2, "float64"
    c.wave.standard_ratio_init = 0.3
    embed = registry.EMBEDDINGS[embedding](ml_collections.FrozenConfigDict(c), 11)
    with jax.enable_x64(True):
        tokens = jnp.asarray([[3, 0, 10, 3, 7]], jnp.int32)
        params = unbox(jax.jit(embed.init)(jax.random.PRNGKey(0), tokens)["params"])
        params = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), params)
        fixed = {k: params.pop(k) for k in ("standard_ratio",) if k in params}
        weights = normal(95, (1, 5, 8), 1.0, np.float64)

        def f(p):
            return jnp.sum(weights * embed.apply({"params": {**p, **fixed}}, tokens))

        assert jax.jit(f)(params).dtype == jnp.float64
        grads = jax.jit(jax.grad(f))(params)
        assert all(float(jnp.abs(g).max()) > 0 for g in jax.tree.leaves(grads))  # every parameter gets a gradient
        check_grads(jax.jit(f), (params,), order=1, modes=("fwd", "rev"))


# == 4. embeddings, MLP, head against numpy ===========================================================================

def _layer_norm(x, scale, bias, eps=1e-5):
    mu = x.mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(((x - mu) ** 2).mean(-1, keepdims=True) + eps) * scale + bias


def _features(offset, phase, pos_freq, amp):
    t = np.arange(offset.shape[1])
    theta = offset + phase[..., None] + (t[:, None] * pos_freq)[None, :, :, None]
    b, tt, w, n = theta.shape
    return np.concatenate([(amp * np.sin(theta)).reshape(b, tt, w * n),
                           (amp * np.cos(theta)).reshape(b, tt, w * n)], -1)


def _embed_setup(embedding: str, **wave_overrides):
    c = wave_configs.get_config("tiny").model
    c.d_model, c.wave.num_waves, c.wave.num_harmonics = 16, 4, 3
    for k, v in wave_overrides.items():
        c.wave[k] = v
    embed = registry.EMBEDDINGS[embedding](ml_collections.FrozenConfigDict(c), 20)
    tokens = np.random.default_rng(100).integers(0, 20, (2, 9)).astype(np.int32)
    params = unbox(jax.jit(embed.init)(jax.random.PRNGKey(3), jnp.asarray(tokens))["params"])
    return embed, params, tokens


def test_wave_packet_embedding_matches_numpy():
    embed, params, tokens = _embed_setup("wave_packet")
    p = jax.tree.map(lambda a: np.asarray(a, np.float64), params)
    n = np.arange(1, 4)
    offset = TWO_PI * p["freq"][tokens][..., None] * n  # 2 pi n f: a phase offset, not multiplied by t
    feats = _features(offset, p["phase"][tokens], p["pos_freq"].reshape(4), p["amp"][tokens])
    wave_part = feats @ p["to_embed"]["kernel"] + p["to_embed"]["bias"]
    g = 1 / (1 + np.exp(-p["wave_ratio"]))
    mixed = g * wave_part + (1 - g) * p["simple_table"]["embedding"][tokens]
    want = _layer_norm(mixed, p["ln"]["scale"], p["ln"]["bias"])
    np.testing.assert_allclose(jax.jit(embed.apply)({"params": params}, jnp.asarray(tokens)), want, atol=2e-5)
    # the original's inits: f = linspace(0.5, 5, W) + N(0, 0.1^2), a ~ N(0, (0.5/sqrt(N W))^2), phi in [0, 2 pi)
    assert np.abs(p["freq"].mean(0) - np.linspace(0.5, 5.0, 4)).max() < 0.1
    assert 0 <= p["phase"].min() and p["phase"].max() < TWO_PI and float(p["wave_ratio"]) == 0.5
    assert p["amp"].std() == pytest.approx(0.5 / math.sqrt(12), rel=0.3)
    logits = jax.jit(lambda p, x: embed.apply(p, x, method=embed.attend))({"params": params}, jnp.ones((1, 3, 16)))
    np.testing.assert_allclose(logits, np.ones((1, 3, 16)) @ p["simple_table"]["embedding"].T, atol=1e-5)


@pytest.mark.parametrize("faithful", [False, True])
def test_physics_embedding_matches_numpy_and_anneals(faithful):
    embed, params, tokens = _embed_setup("wave_physics", standard_ratio_init=0.4, seed_faithful=faithful)
    p = jax.tree.map(lambda a: np.asarray(a, np.float64), params)
    assert set(params) == {"phase", "pos_freq", "standard_ratio", "simple_table", "to_embed", "ln"}  # f, a fixed
    n = np.arange(1, 4)
    offset = np.broadcast_to((TWO_PI * n * np.sqrt(tokens[..., None] + 1.0))[:, :, None, :], (2, 9, 4, 3))
    feats = _features(offset, p["phase"][tokens], p["pos_freq"].reshape(4), 1.0 / n)
    wave_part = feats @ p["to_embed"]["kernel"] + p["to_embed"]["bias"]
    table = p["simple_table"]["embedding"][tokens]

    def want(r):
        return _layer_norm((1 - r) * wave_part + r * table, p["ln"]["scale"], p["ln"]["bias"])

    apply = jax.jit(embed.apply, static_argnums=2)
    train = apply({"params": params}, jnp.asarray(tokens), False)
    evaluate = apply({"params": params}, jnp.asarray(tokens), True)
    np.testing.assert_allclose(train, want(0.4), atol=3e-5)
    np.testing.assert_allclose(evaluate, want(0.0 if faithful else 0.4), atol=3e-5)  # [K] evaluated at r = 0


def test_zipf_offsets_keep_precision_for_large_ids():
    offsets = wave.zipf_phase_offsets(50257, 4)
    ids = np.array([0, 1, 999, 50256])
    exact = np.mod(TWO_PI * np.arange(1, 5)[None] * np.sqrt(ids[:, None] + 1.0), TWO_PI)
    np.testing.assert_allclose(offsets[ids], exact, atol=1e-6)


def test_mlp_activation_and_collapse_head():
    h = np.linspace(-4, 4, 17)
    from scipy.special import erf

    gelu = 0.5 * h * (1 + erf(h / math.sqrt(2)))
    np.testing.assert_allclose(wave.resonance_activation(jnp.asarray(h, jnp.float32)), gelu + 0.1 * np.sin(h),
                               atol=1e-6)
    c = model_config()
    head = registry.HEADS["wave_collapse"](c, 65)
    x = normal(110, (2, 3, 64))
    params = unbox(jax.jit(head.init)(jax.random.PRNGKey(0), x)["params"])
    assert set(params) == {"ln", "out"} and params["out"]["bias"].shape == (65,)
    params["out"]["bias"] = normal(111, (65,))
    p = jax.tree.map(lambda a: np.asarray(a, np.float64), params)
    normed = _layer_norm(np.asarray(x, np.float64), p["ln"]["scale"], p["ln"]["bias"])
    want = normed @ p["out"]["kernel"] + p["out"]["bias"]
    np.testing.assert_allclose(jax.jit(head.apply)({"params": params}, x), want, atol=1e-4)


# == 5. parameter counts ==============================================================================================

def _param_count(config, vocab: int) -> int:
    model = build_model(config.model, vocab)
    shapes = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), jnp.zeros((1, 8), jnp.int32), True))
    return count_params(shapes["params"])


def test_published_parameter_counts():
    """The spec's arithmetic (§7), each matching a logged number: the [B] wave model 15,433,657 and the benchmark's
    classic 15,081,216, both at the original's 1024-entry vocabulary."""
    assert _param_count(wave_configs.get_config(), 1024) == 15_433_657
    assert _param_count(wave_configs.get_config("classic"), 1024) == 15_081_216


def test_interference_and_pure_parameter_counts():
    d, h, w = 384, 8, 48
    linear = d * h * w + h * w
    square = d * d + d
    per_block_rest = 2 * 2 * d + (d * 4 * d + 4 * d) + (4 * d * d + d)  # two LNs, the MLP
    base = _param_count(wave_configs.get_config(), 1024)
    cosine_attn = 2 * linear + 2 * square + 2 * h * w + 1
    interference = _param_count(wave_configs.get_config("interference"), 1024)
    assert interference - base == 8 * ((3 * linear + 2 * square) - cosine_attn)
    pure = _param_count(wave_configs.get_config("pure_elu"), 1024)
    assert pure - base == 8 * ((4 * linear + 2 * square + h) - cosine_attn)
    assert _param_count(wave_configs.get_config("pure_elu+linear"), 1024) == pure  # sigma_h exists in both modes
    assert per_block_rest > 0


# == 6. configs =======================================================================================================

@pytest.mark.parametrize("arg", ["", "classic", "physics", "interference", "pure_elu", "pure_sigmoid", "pure_exp",
                                 "pure_elu+linear", "faithful", "cpu", "tiny", "physics+tiny", "pure_exp+linear+tiny"])
def test_presets_validate(arg):
    c = validate(wave_configs.get_config(arg or None))
    assert c.model.family == "wave"


def test_preset_contents():
    b = wave_configs.get_config()
    assert (b.model.embedding, b.model.attention, b.model.mixer, b.model.head) == (
        "wave_packet", "wave_cosine", "wave_mlp", "wave_collapse")
    assert not b.model.final_norm and b.model.wave.simple_embed_std == 1.0
    assert (b.train.optimizer, b.train.loss, b.train.steps, b.train.lr) == ("resonant", "qfe", 15000, 6e-4)
    classic = wave_configs.get_config("classic")
    t = classic.train
    assert (t.optimizer, t.loss, t.steps, t.lr) == ("adamw", "ce", 5000, 3e-4)
    physics = wave_configs.get_config("physics")
    assert physics.model.embedding == "wave_physics" and physics.train.wave_optim.anneal_steps == 3000
    assert wave.resolved(wave_configs.get_config("faithful+pure_elu+linear").model.wave)["pure_mode"] == "quadratic"


@pytest.mark.parametrize("key,value,message", [
    ("model.wave.pure_kernel", "relu", "model.wave.pure_kernel must be one of"),
    ("model.wave.pure_mode", "cubic", "model.wave.pure_mode must be one of"),
    ("model.wave.num_waves", 0, "model.wave.num_waves must be >= 1"),
    ("model.wave.interference_block", 0, "model.wave.interference_block must be >= 1"),
    ("model.wave.standard_ratio_init", 1.5, "model.wave.standard_ratio_init must be in"),
    ("model.wave.simple_embed_std", 0.0, "model.wave.simple_embed_std must be > 0"),
])
def test_bad_wave_settings_are_config_errors(key, value, message):
    from wavejax.config import set_value

    c = wave_configs.get_config("tiny")
    set_value(c, key, value)
    with pytest.raises(ConfigError, match=message):
        validate(c)


def test_wave_part_without_wave_section_is_a_config_error():
    baseline = configs("baseline")
    c = baseline.get_config("tiny")
    c.model.attention = "wave_interference"
    with pytest.raises(ConfigError, match="needs a model.wave section"):
        validate(c)


def test_cli_bad_kernel_exits_2_with_one_line(tmp_path):
    workdir = tmp_path / "run"
    proc = run_module("wavejax.main", "--config=configs/wave.py:tiny+pure_elu", "--config.model.wave.pure_kernel=relu",
                      f"--workdir={workdir}")
    line = assert_one_error_line(proc, 2)
    assert "pure_kernel" in line and not workdir.exists()


def test_the_attention_ops_check_their_shape_contracts():
    """The public ops state their shapes with chex: a wrong rank or mismatched inputs fail at trace time, naming them."""
    x = jnp.zeros((1, 2, 8, 4))
    with pytest.raises(AssertionError, match="rank"):
        A.interference_attention(x[0], x[0], x[0], x[0], normalize=True)
    with pytest.raises(AssertionError, match="shape"):
        A.interference_attention(x, x, jnp.zeros((1, 2, 8, 3)), x, normalize=True)
    chex.assert_shape(A.interference_attention(x, x, x + 1, x, normalize=True, block_size=4), (1, 2, 8, 4))

