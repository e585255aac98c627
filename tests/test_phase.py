"""PhaseGPT (wavejax/models/phase.py, configs/phase.py; spec: docs/specs/phasegpt.md).

1. the O(S) mean-field coupling equals the pairwise [B,H,S,S,O] reference (and both equal a float64 loop), and the
   scanned dynamics equal an independent float64 Euler integration;
2. float64 check_grads through the scanned dynamics (w.r.t. theta0, omega, K) and through the layer;
3. causality of the layer and of the tiny phase model, and the future leak of the faithful mode;
4. parameter counts (591,372 with angle features at D=768, H=12, O=32; the Phase A model totals);
5. the coherence regulariser's gradient (and its zero in the faithful mode);
6. the signs of the coupling (the original's is repulsive for K > 0);
7. the order parameters, including the interpretability script's 0.88 for pure noise;
8. config checks, the CLI's one-line error, presets and `resolved`;
9. a tiny training run logging R, and training-only noise/jitter;
10. the PhaseGPT weight-decay mask and the clamped cosine schedule.
"""

from __future__ import annotations

import functools
import math
import re

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
from wavejax.models.gpt import build_model
from wavejax.models.phase import KuramotoAttention, check_phase_config, default_phase_config, resolved
from wavejax.nn.optimizers import decay_mask
from wavejax.ops.phase import (
    coherence_penalty,
    kuramoto_coupling,
    kuramoto_coupling_reference,
    kuramoto_dynamics,
    order_parameter_channels,
    order_parameter_interpret,
    order_parameter_layer,
    order_parameter_tokens,
    wrap,
)
from wavejax.train import optim

from conftest import apply_overrides, assert_one_error_line, configs, run_module

phase_configs = configs("phase")

PI = math.pi
VOCAB = 65


def _key(i: int):
    return jax.random.PRNGKey(i)


# Test inputs come from numpy: every eager jax.random call with a new shape is an XLA compile (~0.3 s on 2 cores).
def normal(seed: int, shape, scale: float = 1.0, dtype=np.float32):
    return jnp.asarray(scale * np.random.default_rng(seed).standard_normal(shape), dtype)


def uniform(seed: int, shape, low: float, high: float, dtype=np.float32):
    return jnp.asarray(np.random.default_rng(seed).uniform(low, high, shape), dtype)


def draw_params(shapes, phase, seed: int = 0):
    """Parameters for eval_shape'd `shapes`, drawn the way the layer and the GPT trunk initialise them: kernels and
    embeddings N(0, 0.02^2), biases 0, LayerNorm scales 1, one coupling K0 per head, omega = freq_std N(0,1).
    (A jitted init costs 0.5 s (layer) to 2.5 s (tiny model) of XLA compile on 2 cores; real inits are exercised by
    test_layer_runs_under_x64 and the training run.)"""
    rng = np.random.default_rng(seed)

    def draw(path, leaf):
        name = path[-1].key
        if name == "bias":
            value = np.zeros(leaf.shape)
        elif name == "scale":
            value = np.ones(leaf.shape)
        elif name == "coupling":
            value = np.full(leaf.shape, phase.coupling_init)
        elif name == "omega":
            value = phase.freq_std * rng.standard_normal(leaf.shape)
        else:
            value = 0.02 * rng.standard_normal(leaf.shape)
        return jnp.asarray(value, leaf.dtype)

    return jax.tree_util.tree_map_with_path(draw, shapes)


def layer_config(d_model: int = 16, n_head: int = 2, dropout: float = 0.0, **phase) -> ml_collections.FrozenConfigDict:
    """The model-config fields KuramotoAttention reads, with a phase section from default_phase_config()."""
    c = ml_collections.ConfigDict({"d_model": d_model, "n_head": n_head, "dropout": dropout, "dtype": "float32"})
    c.phase = default_phase_config()
    for key, value in phase.items():
        c.phase[key] = value
    return ml_collections.FrozenConfigDict(c)


# Layers and models are hashable (frozen configs), so these jitted helpers reuse one compile per configuration.
def init_layer(layer, x, seed: int = 100):
    shapes = unbox(jax.eval_shape(lambda key: layer.init(key, x, True), _key(0))["params"])
    return draw_params(shapes, layer.config.phase, seed)


def apply_layer(layer, params, x, deterministic=True, rng=None, mutable=()):
    rngs = {"dropout": rng} if rng is not None else None
    return layer.apply({"params": params}, x, deterministic, rngs=rngs, mutable=list(mutable) if mutable else False)


apply_layer_jit = jax.jit(apply_layer, static_argnames=("layer", "deterministic", "mutable"))


def _numpy_coupling(theta, causal: bool, norm: str):
    """mean_j sin(theta_i - theta_j) by an explicit float64 loop over i (j <= i when causal)."""
    theta = np.asarray(theta, np.float64)
    s = theta.shape[2]
    out = np.zeros_like(theta)
    for i in range(s):
        js = np.arange(i + 1) if causal else np.arange(s)
        denom = (i + 1 if norm == "count" else s) if causal else s
        out[:, :, i] = np.sin(theta[:, :, i, None, :] - theta[:, :, js, :]).sum(axis=2) / denom
    return out


def _numpy_dynamics(theta0, omega, k, steps, dt, sign, causal, norm):
    """Explicit Euler with the wrap after every step, float64, pairwise (independent of the package)."""
    theta = np.asarray(theta0, np.float64)
    omega, k = np.asarray(omega, np.float64), np.asarray(k, np.float64)[None, :, None, None]
    for _ in range(steps):
        theta = theta + dt * (omega + sign * k * _numpy_coupling(theta, causal, norm))
        theta = np.mod(theta + np.pi, 2 * np.pi) - np.pi
    return theta


def assert_same_angles(a, b, atol):
    """Angles equal modulo 2 pi: compare cos and sin (a raw difference can be 2 pi at the wrap)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    np.testing.assert_allclose(np.cos(a), np.cos(b), atol=atol, rtol=0)
    np.testing.assert_allclose(np.sin(a), np.sin(b), atol=atol, rtol=0)


# == 1. mean-field coupling and dynamics ============================================================================

_coupling = jax.jit(kuramoto_coupling, static_argnums=(1, 2))
_coupling_ref = jax.jit(kuramoto_coupling_reference, static_argnums=(1, 2))
MODES = [(False, "count"), (False, "length"), (True, "count"), (True, "length")]


def test_wrap_range_and_period():
    x = jnp.array([-3 * PI, -PI, -PI + 1e-3, 0.0, PI - 1e-3, PI, 2.5 * PI, 7.0], jnp.float32)
    w = wrap(x)
    assert bool(jnp.all(w >= -PI)) and bool(jnp.all(w < PI))
    assert_same_angles(w, x, atol=1e-5)
    assert float(wrap(jnp.float32(PI))) == pytest.approx(-PI)  # [-pi, pi): +pi maps to -pi, the jump of the wrap


def test_coupling_sign_convention_by_hand():
    """theta = (0, pi/2, pi): the code computes mean_j sin(theta_i - theta_j) (spec 1.3: i minus j, not j minus i)."""
    theta = jnp.array([0.0, PI / 2, PI], jnp.float32).reshape(1, 1, 3, 1)
    expected = {
        (False, "count"): [-1 / 3, 0.0, 1 / 3],
        (False, "length"): [-1 / 3, 0.0, 1 / 3],  # the norm only matters for the causal prefix
        (True, "count"): [0.0, 1 / 2, 1 / 3],  # position i averages over its i+1 predecessors
        (True, "length"): [0.0, 1 / 3, 1 / 3],  # divided by S: the original's scale
    }
    for (causal, norm), want in expected.items():
        for fn in (kuramoto_coupling, kuramoto_coupling_reference):
            got = np.asarray(fn(theta, causal, norm)).ravel()
            np.testing.assert_allclose(got, want, atol=1e-6, err_msg=f"{fn.__name__} causal={causal} norm={norm}")


@pytest.mark.parametrize("causal,norm", MODES)
@pytest.mark.parametrize("shape", [(3, 2, 1, 5), (1, 1, 7, 1), (2, 3, 7, 4), (2, 2, 64, 3), (1, 4, 64, 8)],
                         ids=lambda s: "B{}H{}S{}O{}".format(*s))
def test_mean_field_coupling_equals_pairwise_reference(shape, causal, norm):
    # Unwrapped angles too: the identity sin(a - b) = sin a cos b - cos a sin b holds for any angle.
    theta = uniform(shape[2] * 10 + shape[3], shape, -3 * PI, 3 * PI)
    fast, ref = _coupling(theta, causal, norm), _coupling_ref(theta, causal, norm)
    assert fast.shape == ref.shape == shape and fast.dtype == jnp.float32
    np.testing.assert_allclose(fast, ref, atol=1e-5, rtol=0)
    np.testing.assert_allclose(ref, _numpy_coupling(theta, causal, norm), atol=1e-5, rtol=0)
    if shape[2] == 1:
        np.testing.assert_array_equal(fast, 0.0)  # one token: nothing to couple to


@pytest.mark.parametrize("causal,norm,sign", [(False, "count", 1.0), (True, "count", -1.0), (True, "length", 1.0)])
def test_dynamics_mean_field_equals_reference_and_float64_euler(causal, norm, sign):
    theta0 = PI * jnp.tanh(normal(1, (2, 3, 16, 4), 0.8))
    omega = normal(2, (3, 1, 4), 0.5)  # large enough that some angles cross +-pi and wrap
    k = jnp.array([1.5, -0.7, 0.3], jnp.float32)
    kw = dict(steps=10, dt=0.1, sign=sign, causal=causal, causal_norm=norm)
    fast = jax.jit(functools.partial(kuramoto_dynamics, **kw))(theta0, omega, k)
    ref = jax.jit(functools.partial(kuramoto_dynamics, coupling_fn=kuramoto_coupling_reference, **kw))(theta0, omega, k)
    assert bool(jnp.all(fast >= -PI)) and bool(jnp.all(fast < PI))
    assert_same_angles(fast, ref, atol=1e-5)
    assert_same_angles(fast, _numpy_dynamics(theta0, omega, k, 10, 0.1, sign, causal, norm), atol=1e-4)
    # The comparison is not vacuous: the coupling moved the phases well beyond the free rotation theta0 + T dt omega.
    free = theta0 + 10 * 0.1 * omega
    assert float(jnp.max(jnp.abs(jnp.sin(fast) - jnp.sin(free)))) > 0.05


def test_dynamics_noise_is_per_step_gaussian_and_reproducible():
    theta0 = uniform(3, (2, 3, 64, 8), -0.5, 0.5)  # far from the wrap
    zeros, no_k = jnp.zeros((3, 1, 8), jnp.float32), jnp.zeros((3,), jnp.float32)
    run = jax.jit(lambda key, std: kuramoto_dynamics(theta0, zeros, no_k, steps=10, dt=0.1, sign=1.0, causal=True,
                                                     noise_key=key, noise_std=std))
    a, b, c = run(_key(3), 0.01), run(_key(3), 0.01), run(_key(4), 0.01)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    # K = 0, omega = 0 and no noise: nothing moves (up to the wrap's rounding)
    np.testing.assert_allclose(run(_key(3), 0.0), theta0, atol=1e-6)
    # 10 independent N(0, 0.01^2) increments: the total has std 0.01 * sqrt(10) (6144 samples, ~1% standard error).
    assert float(jnp.std(a - theta0)) == pytest.approx(0.01 * math.sqrt(10), rel=0.05)


# == 2. gradients ====================================================================================================

def _trajectory(theta0, omega, k, steps, **kw):
    """theta^0..theta^T, one Euler step at a time (same compiled step), to see every intermediate angle."""
    step = jax.jit(lambda th: kuramoto_dynamics(th, omega, k, steps=1, **kw))
    out = [theta0]
    for _ in range(steps):
        out.append(step(out[-1]))
    return jnp.stack(out)


@pytest.mark.parametrize("causal,sign,remat", [(True, -1.0, True), (False, 1.0, False)])
def test_check_grads_raw_angles_away_from_the_wrap(causal, sign, remat):
    """check_grads in float64 (fwd and rev, order 1) of the raw final angles w.r.t. theta0, omega and K.

    wrap() jumps by 2 pi at +-pi: a finite difference that straddles the jump sees a slope of ~2 pi / eps while the
    derivative says 1, so check_grads would fail spuriously. Here T*dt is small and theta0 stays inside (-1.5, 1.5);
    the test asserts that no intermediate angle gets near +-pi, so the function checked really is smooth."""
    with jax.enable_x64(True):
        theta0 = 1.5 * jnp.tanh(normal(5, (1, 2, 6, 3), dtype=np.float64))
        omega = normal(6, (2, 1, 3), 0.2, np.float64)
        k = jnp.array([0.8, -0.5], jnp.float64)
        kw = dict(dt=0.1, sign=sign, causal=causal, causal_norm="count", remat=remat)
        traj = _trajectory(theta0, omega, k, 5, **kw)
        assert float(jnp.max(jnp.abs(traj))) < PI - 0.5  # no angle near the wrap at any step
        f = jax.jit(lambda th, om, kk: kuramoto_dynamics(th, om, kk, steps=5, **kw))
        np.testing.assert_allclose(f(theta0, omega, k), traj[-1], atol=1e-12)
        assert f(theta0, omega, k).dtype == jnp.float64
        check_grads(f, (theta0, omega, k), order=1, modes=("fwd", "rev"))


def test_check_grads_smooth_readout_across_the_wrap():
    """Where angles DO cross +-pi, sin/cos of the output are still smooth (the wrap is a 2 pi shift, and the step
    reads theta only through sin/cos), so check_grads of sin/cos is an honest check through the jumps."""
    with jax.enable_x64(True):
        theta0 = 2.9 + 0.2 * jnp.tanh(normal(7, (1, 2, 6, 3), dtype=np.float64))
        omega = 0.8 + normal(8, (2, 1, 3), 0.1, np.float64)
        k = jnp.array([1.2, -0.6], jnp.float64)
        kw = dict(dt=0.1, sign=1.0, causal=True, causal_norm="length")
        traj = _trajectory(theta0, omega, k, 5, **kw)
        assert int(jnp.sum(jnp.abs(jnp.diff(traj, axis=0)) > PI)) >= 10  # many angles wrapped from +pi to -pi
        w_sin = jnp.linspace(0.5, 1.5, theta0.size).reshape(theta0.shape)
        w_cos = jnp.linspace(-1.0, 0.7, theta0.size).reshape(theta0.shape)

        def readout(th, om, kk):
            theta = kuramoto_dynamics(th, om, kk, steps=5, **kw)
            return jnp.sum(w_sin * jnp.sin(theta) + w_cos * jnp.cos(theta))

        check_grads(jax.jit(readout), (theta0, omega, k), order=1, modes=("fwd", "rev"))


def test_remat_does_not_change_gradients():
    theta0 = PI * jnp.tanh(normal(9, (2, 2, 8, 3)))
    omega = normal(10, (2, 1, 3), 0.1)
    k = jnp.array([1.0, 0.5], jnp.float32)

    def grads(remat):
        def f(*args):
            return jnp.sum(jnp.sin(kuramoto_dynamics(*args, steps=10, dt=0.1, sign=-1.0, causal=True, remat=remat)))

        return jax.jit(jax.grad(f, argnums=(0, 1, 2)))(theta0, omega, k)

    for a, b in zip(grads(True), grads(False)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_check_grads_through_the_layer_params():
    """The whole KuramotoAttention apply w.r.t. every parameter (to_phase, omega, coupling, from_phase).

    The layer computes in float32 whatever x64 says (its Dense layers use the config dtype, theta^0 is cast to
    float32), so this is a float32 check at check_grads' float32 tolerance. Finite differences in float32 need a
    well-scaled step: check_grads perturbs along N(0,1) directions, which for a kernel of scale 0.02 would be a huge
    relative step into the layer's curvature. So the check runs in coordinates z with params = p0 + scale * z
    (scale = each leaf's typical size), at z = 0 with eps = 1e-3: the same function, just rescaled."""
    layer = KuramotoAttention(layer_config(d_model=8, n_head=2, oscillators=3, coupling_init=1.0, causal=True))
    x = normal(11, (1, 5, 8), 2.0)
    params = init_layer(layer, x)
    scale = jax.tree.map(lambda a: np.float32(max(np.std(a), 0.1 * np.max(np.abs(a)), 0.02)), params)
    weights = normal(12, (1, 5, 8), 1 / 8)

    def f(z):
        p = jax.tree.map(lambda p0, s, zz: p0 + s * zz, params, scale, z)
        return jnp.sum(weights * apply_layer(layer, p, x))

    z0 = jax.tree.map(jnp.zeros_like, params)
    grads = jax.jit(jax.grad(f))(z0)
    assert all(float(jnp.abs(g).max()) > 1e-5 for g in jax.tree.leaves(grads))  # every parameter gets a gradient
    check_grads(jax.jit(f), (z0,), order=1, modes=("fwd", "rev"), eps=1e-3)


def test_layer_runs_under_x64():
    """With jax_enable_x64 the parameters stay float32 and the layer traces (an omega initialised in the default float
    dtype became float64 there, and so did the jittered omega: the scan carry theta went float32 -> float64 and
    jax.lax.scan raised). The dtype error is a trace-time error, so eval_shape is enough (and costs no compile)."""
    with jax.enable_x64(True):
        layer = KuramotoAttention(layer_config(oscillators=4, freq_jitter=0.02, phase_noise=0.03))
        x = jax.ShapeDtypeStruct((1, 4, 16), jnp.float32)
        params = unbox(jax.eval_shape(lambda key, x: layer.init(key, x, True), _key(0), x)["params"])
        assert {a.dtype for a in jax.tree.leaves(params)} == {jnp.dtype(jnp.float32)}
        evaluate = jax.eval_shape(lambda p, x: apply_layer(layer, p, x), params, x)
        train = jax.eval_shape(lambda p, x, rng: apply_layer(layer, p, x, deterministic=False, rng=rng),
                               params, x, _key(1))
        assert evaluate.dtype == train.dtype == jnp.float32 and train.shape == (1, 4, 16)


# == 3. causality ====================================================================================================

@pytest.mark.parametrize("phase,causal", [
    ({}, True),
    ({"causal_norm": "length"}, True),
    ({"sign": "repulsive", "output_features": "angle"}, True),
    ({"causal": False}, False),
    ({"seed_faithful": True}, False),
    ({"seed_faithful": True, "causal": True}, False),  # seed_faithful overrides the causal flag
], ids=["default", "length", "repulsive-angle", "noncausal", "faithful", "faithful-overrides-causal"])
def test_layer_causality_and_the_faithful_leak(phase, causal):
    layer = KuramotoAttention(layer_config(oscillators=4, **phase))
    i = 5
    x = normal(13, (2, 12, 16), 5.0)  # theta^0 spread over (-pi, pi): the coupling matters
    x2 = x.at[:, i + 1:].set(normal(14, (2, 12 - i - 1, 16), 5.0))
    params = init_layer(layer, x)
    y, y2 = apply_layer_jit(layer, params, x), apply_layer_jit(layer, params, x2)
    past = float(jnp.abs(y[:, : i + 1] - y2[:, : i + 1]).max())
    assert float(jnp.abs(y[:, i + 1:] - y2[:, i + 1:]).max()) > 1e-3  # the changed positions do change
    if causal:
        assert past < 1e-6, past
    else:
        assert past > 1e-4, past  # the future leaks into every earlier position
        assert float(jnp.abs(y[:, 0] - y2[:, 0]).max()) > 1e-4  # even the first token sees the future


def _param_shapes(model, seq: int = 8):
    return unbox(jax.eval_shape(lambda key: model.init(key, jnp.zeros((1, seq), jnp.int32), True), _key(0))["params"])


@functools.lru_cache(maxsize=None)
def _tiny_model(arg: str):
    """configs/phase.py:ARG's model and parameters (see draw_params)."""
    config = phase_configs.get_config(arg)
    model = build_model(config.model, VOCAB)
    return config, model, draw_params(_param_shapes(model), config.model.phase, seed=12)


@functools.partial(jax.jit, static_argnames=("model", "deterministic"))
def _logits(model, params, tokens, deterministic=True, rng=None):
    return model.apply({"params": params}, tokens, deterministic, rngs=None if rng is None else {"dropout": rng})


@pytest.mark.parametrize("arg", ["tiny", "tiny+faithful"])
def test_phase_model_logits_causal_and_faithful_leak(arg):
    config, model, params = _tiny_model(arg)
    i = 20
    rng = np.random.default_rng(15)
    tokens = rng.integers(0, VOCAB, (2, 32))
    changed = tokens.copy()
    changed[:, i + 1:] = (tokens[:, i + 1:] + rng.integers(1, VOCAB, (2, 32 - i - 1))) % VOCAB
    assert (changed[:, i + 1:] != tokens[:, i + 1:]).all() and (changed[:, : i + 1] == tokens[:, : i + 1]).all()
    a, b = _logits(model, params, tokens), _logits(model, params, changed)
    assert float(jnp.abs(a[:, i + 1:] - b[:, i + 1:]).max()) > 1e-3
    past = float(jnp.abs(a[:, : i + 1] - b[:, : i + 1]).max())
    if config.model.phase.seed_faithful:
        assert past > 1e-4, past  # the original's layer leaks the next-token targets
    else:
        assert past < 1e-5, past


# == 4. parameter counts =============================================================================================

def _layer_param_shapes(**phase):
    layer = KuramotoAttention(layer_config(d_model=768, n_head=12, oscillators=32, **phase))
    return unbox(jax.eval_shape(lambda key: layer.init(key, jnp.zeros((1, 4, 768)), True), _key(0))["params"])


def test_parameter_count_phase_a_layer():
    d, h, o = 768, 12, 32
    angle = _layer_param_shapes(output_features="angle")
    assert angle["omega"].shape == (h, o) and angle["coupling"].shape == (h,)  # one coupling scalar per head
    assert angle["to_phase"]["kernel"].shape == (d, h * o) and angle["from_phase"]["kernel"].shape == (h * o, d)
    assert count_params(angle) == 591_372 == (d * h * o + h * o) + h * o + h + (h * o * d + d)  # spec 1.1
    cossin = _layer_param_shapes(output_features="cossin")
    assert cossin["from_phase"]["kernel"].shape == (2 * h * o, d)  # [cos, sin] features double the input
    assert count_params(cossin) == (d * h * o + h * o) + h * o + h + (2 * h * o * d + d) == 886_284
    assert count_params(_layer_param_shapes(seed_faithful=True, output_features="cossin")) == 591_372  # faithful: angle


@pytest.mark.parametrize("arg,expected", [("faithful", 83_285_004), ("nophase", 85_056_000), (None, 83_579_916)])
def test_phase_a_model_non_embedding_parameters(arg, expected):
    """Spec 3.1: 85,056,000 non-embedding parameters for the baseline and 83,285,004 with one (angle) phase layer."""
    config = phase_configs.get_config(arg)
    shapes = _param_shapes(build_model(config.model, VOCAB))
    embeddings = VOCAB * 768 + 512 * 768  # tied wte and wpe
    assert count_params(shapes) - embeddings == expected


# == 5. the coherence regulariser ====================================================================================

def test_coherence_penalty_modes():
    rn = np.array([0.2, 0.4, 0.45, 0.5, 0.6])
    r = jnp.asarray(rn, jnp.float32)
    expected = {
        "ceiling": 0.1 * np.maximum(0, rn - 0.45) ** 2,
        "center": 0.1 * (rn - 0.45) ** 2,
        "band": 0.1 * (np.maximum(0, 0.35 - rn) ** 2 + np.maximum(0, rn - 0.55) ** 2),  # target +- 0.1
    }
    for mode, want in expected.items():
        np.testing.assert_allclose(coherence_penalty(r, mode, 0.45, 0.1), want, atol=1e-9, err_msg=mode)
    with pytest.raises(ValueError):
        coherence_penalty(r, "floor", 0.45, 0.1)


@functools.partial(jax.jit, static_argnames=("layer",))
def _penalty_and_grads(layer, params, x):
    def penalty(p):
        _, v = apply_layer(layer, p, x, mutable=["losses"])
        return sum(jnp.sum(t) for t in jax.tree.leaves(v["losses"]))

    value, grads = jax.value_and_grad(penalty)(params)
    out_grads = jax.grad(lambda p: jnp.sum(apply_layer(layer, p, x)))(params)
    _, v = apply_layer(layer, params, x, mutable=["intermediates"])
    return value, grads, out_grads, v["intermediates"]["phases"][0]


def _regulariser(**phase):
    """(d penalty / d to_phase kernel, d sum(y) / d to_phase kernel) with the penalty active (center, target 0)."""
    layer = KuramotoAttention(layer_config(oscillators=4, reg_lambda=1.0, reg_mode="center", reg_target=0.0, **phase))
    x = normal(16, (2, 8, 16), 3.0)
    value, grads, out_grads, phases = _penalty_and_grads(layer, init_layer(layer, x), x)
    np.testing.assert_allclose(value, coherence_penalty(order_parameter_channels(phases).mean(), "center", 0.0, 1.0),
                               rtol=1e-6)  # the sowed penalty is the original's regulariser of the final phases
    assert float(value) > 0.01  # center mode with target 0: the penalty is lambda R^2, active
    return grads["to_phase"]["kernel"], out_grads["to_phase"]["kernel"]


def test_regulariser_gradient_reaches_the_phase_projection():
    reg, _ = _regulariser()
    assert float(jnp.abs(reg).max()) > 1e-5


@pytest.mark.parametrize("phase", [{"seed_faithful": True}, {"reg_grad": False}], ids=["faithful", "reg_grad_off"])
def test_detached_regulariser_has_exactly_zero_gradient(phase):
    reg, out = _regulariser(**phase)
    assert float(jnp.abs(reg).max()) == 0.0  # the original's detached phases: a constant added to the loss
    assert float(jnp.abs(out).max()) > 1e-5  # ... although to_phase does get gradient through the layer output


def test_no_regulariser_no_losses_entry():
    layer = KuramotoAttention(layer_config(oscillators=4))  # reg_lambda 0
    x = normal(17, (1, 4, 16))
    _, v = apply_layer_jit(layer, init_layer(layer, x), x, mutable=("losses", "diagnostics"))
    assert not jax.tree.leaves(v.get("losses", {}))
    assert set(v["diagnostics"]) == {"R_tokens", "R_channels", "R_layer"}


# == 6. signs ========================================================================================================

@functools.lru_cache(maxsize=None)
def _spec_dynamics_inputs():
    """Spec 1.3's numpy check: B=2, H=12, S=256, O=32, theta0 = pi tanh(N(0, 0.55^2)), omega ~ N(0, 0.1^2)."""
    return PI * jnp.tanh(normal(18, (2, 12, 256, 32), 0.55)), normal(19, (12, 1, 32), 0.1)


@functools.partial(jax.jit, static_argnames=("sign",))
def _r_after(theta0, omega, k, sign):
    theta = kuramoto_dynamics(theta0, omega, jnp.full((12,), k), steps=10, dt=0.1, sign=sign, causal=False)
    return order_parameter_tokens(theta).mean()


def test_signs_move_the_across_token_coherence_as_the_spec_measured():
    theta0, omega = _spec_dynamics_inputs()
    r0 = float(order_parameter_tokens(theta0).mean())
    repulsive, attractive = 1.0, -1.0
    assert r0 == pytest.approx(0.305, abs=0.02)
    r_rep1 = float(_r_after(theta0, omega, 1.0, repulsive))
    assert r_rep1 == pytest.approx(0.172, abs=0.02)  # the original's sign, K = +1: coherence falls
    assert float(_r_after(theta0, omega, 2.0, repulsive)) == pytest.approx(0.093, abs=0.02)
    r_att1 = float(_r_after(theta0, omega, 1.0, attractive))
    assert r_att1 == pytest.approx(0.505, abs=0.02)  # the textbook sign at K = +1 = the original's at K = -1
    assert r_att1 == pytest.approx(float(_r_after(theta0, omega, -1.0, repulsive)), abs=1e-6)
    assert r_rep1 < r0 - 0.1 and r_att1 > r0 + 0.1
    assert float(_r_after(theta0, omega, 0.0, repulsive)) == pytest.approx(r0, abs=0.02)  # K=0: only the omega drift


def test_layer_sign_setting_maps_to_the_dynamics():
    """The layer's R_tokens diagnostic (non-causal): attractive > uncoupled > repulsive on the same input."""
    x = normal(20, (2, 32, 16), 5.0)
    base = layer_config(oscillators=8, causal=False, freq_std=0.0, coupling_init=1.0)
    params = init_layer(KuramotoAttention(base), x)

    def r_tokens(sign, k):
        layer = KuramotoAttention(layer_config(oscillators=8, causal=False, freq_std=0.0, sign=sign))
        p = dict(params, coupling=jnp.full((2,), k))
        _, v = apply_layer_jit(layer, p, x, mutable=("diagnostics",))
        return float(v["diagnostics"]["R_tokens"][0].mean())

    free = r_tokens("attractive", 0.0)
    assert r_tokens("attractive", 1.0) > free + 0.05
    assert r_tokens("repulsive", 1.0) < free - 0.05
    assert r_tokens("repulsive", 0.0) == pytest.approx(free, abs=1e-6)


# == 7. order parameters =============================================================================================

def test_order_parameters_of_known_phases():
    s, o = 16, 4
    spread = jnp.broadcast_to((2 * PI * jnp.arange(s) / s)[None, None, :, None], (1, 2, s, o))  # evenly round a circle
    np.testing.assert_allclose(order_parameter_tokens(spread), 0.0, atol=1e-6)  # across tokens: incoherent
    np.testing.assert_allclose(order_parameter_channels(spread), 1.0, atol=1e-6)  # one token's channels agree
    np.testing.assert_allclose(order_parameter_layer(spread), 0.0, atol=1e-6)
    same = jnp.full((1, 2, s, o), 2.0)
    for fn in (order_parameter_tokens, order_parameter_channels, order_parameter_layer):
        np.testing.assert_allclose(fn(same), 1.0, atol=1e-6)
    assert order_parameter_tokens(spread).shape == (2,) and order_parameter_channels(spread).shape == (1, 2, s)
    assert order_parameter_layer(spread).shape == (1, 2)


def test_interpretability_r_of_pure_noise():
    """Spec 5.3: averaging raw angles over 12 heads concentrates them near 0, so R is ~0.88 for uniform noise."""
    theta = uniform(21, (12, 512, 32), -PI, PI)
    r = order_parameter_interpret(theta)
    assert r.shape == (512,)
    assert float(r.mean()) == pytest.approx(0.876, abs=0.02)
    assert float(order_parameter_tokens(theta[None]).mean()) < 0.1  # the true (across-token) R: near 0
    assert float(order_parameter_interpret(theta[:1]).mean()) < 0.3  # one head, no averaging: low


# == 8. config =======================================================================================================

def _one_sentence(message: str) -> None:
    assert "\n" not in message and message.endswith("."), message
    assert len(re.findall(r"[.!?]\s+[A-Z]", message)) == 0, message


@pytest.mark.parametrize("key,value", [
    ("sign", "up"), ("oscillators", 0), ("steps", 0), ("phase_noise", -0.1), ("phase_noise", float("nan")),
    ("freq_jitter", -0.02), ("dt", -0.1), ("reg_lambda", -1.0), ("output_features", "phase"), ("reg_mode", "floor"),
    ("causal_norm", "mean"),
])
def test_bad_phase_settings_raise_one_sentence(key, value):
    c = layer_config().as_configdict()
    c.phase[key] = value
    with pytest.raises(ConfigError) as info:
        check_phase_config(c)
    message = str(info.value)
    assert f"model.phase.{key}" in message
    _one_sentence(message)
    # validate() runs the same check for a full config whose layers use "phase"
    full = phase_configs.get_config("tiny")
    full.model.phase[key] = value
    with pytest.raises(ConfigError, match=re.escape(f"model.phase.{key}")):
        validate(full)


def test_missing_phase_section_is_a_config_error():
    c = ml_collections.ConfigDict({"d_model": 16, "n_head": 2})
    with pytest.raises(ConfigError) as info:
        check_phase_config(c)
    _one_sentence(str(info.value))
    check_phase_config(layer_config().as_configdict())  # the defaults pass


def test_cli_bad_sign_exits_2_with_one_line(tmp_path):
    workdir = tmp_path / "run"
    proc = run_module("wavejax.main", "--config=configs/phase.py:tiny", "--config.model.phase.sign=up",
                      f"--workdir={workdir}", timeout=120)
    line = assert_one_error_line(proc, 2)
    assert "model.phase.sign" in line and "attractive" in line, line
    assert not workdir.exists()  # nothing written before the config passes


PRESET_ARGS = [None, "tiny", "faithful", "nophase", "tiny+faithful", "tiny+nophase", "wt2_baseline", "wt2_kpc_soft",
               "wt2_kpc_mid", "wt2_kpc_diverse", "tiny+wt2_kpc_diverse", "wt2_kpc_mid+faithful"]


@pytest.mark.parametrize("arg", PRESET_ARGS)
def test_every_phase_preset_validates(arg):
    config = validate(phase_configs.get_config(arg))  # validation does not load data (wikitext is not here)
    names = set(config.model.layer_attention) or {config.model.attention}
    no_phase = arg is not None and any(n in arg.split("+") for n in ("nophase", "wt2_baseline"))
    assert ("phase" in names) == (not no_phase)
    if arg and "wt2" in arg:
        assert config.data.dataset == "wikitext-2-raw-v1" and config.train.decay_mask == "all"
        assert config.train.schedule == "cosine" and config.train.batch_size == 8


def test_faithful_refuses_a_preset_it_would_override():
    """Phase B's noise and jitter cannot run under the original's settings, which have none: refused, not dropped."""
    with pytest.raises(ConfigError, match="seed_faithful=True runs the original's phase_noise=0.0"):
        validate(phase_configs.get_config("wt2_kpc_diverse+faithful"))


def test_presets_tiny_faithful_and_nophase():
    c = phase_configs.get_config("tiny+faithful")
    m = c.model
    assert m.phase.seed_faithful is True
    assert (m.n_layer, m.n_head, m.d_model, m.block_size, m.phase.oscillators) == (2, 2, 64, 64, 8)
    assert tuple(m.layer_attention) == ("dense", "phase")
    assert phase_configs.get_config("faithful+tiny").to_dict() == c.to_dict()  # the presets touch different keys
    p = resolved(m.phase)
    assert (p["causal"], p["sign"], p["output_features"], p["reg_grad"]) == (False, "repulsive", "angle", False)

    default = phase_configs.get_config()
    assert default.model.phase.seed_faithful is False and tuple(default.model.layer_attention).index("phase") == 7
    assert (default.model.n_layer, default.model.d_model, default.model.block_size) == (12, 768, 512)

    nophase = phase_configs.get_config("tiny+nophase")
    assert tuple(nophase.model.layer_attention) == () and nophase.model.attention == "dense"
    shapes = _param_shapes(build_model(nophase.model, VOCAB))
    names = {getattr(p[-1], "key", None) for p, _ in jax.tree_util.tree_flatten_with_path(shapes)[0]}
    assert not names & {"omega", "coupling"}  # no phase layer anywhere
    with pytest.raises(ConfigError):
        phase_configs.get_config("tiny+unknown")


def test_resolved_seed_faithful_overrides_flags():
    p = default_phase_config()
    p.update(causal=True, sign="attractive", output_features="cossin", reg_grad=True, phase_noise=0.03,
             freq_jitter=0.02, reg_lambda=0.1)
    assert resolved(p) == dict(p)  # not faithful: the flags as given
    p.seed_faithful = True
    r = resolved(p)
    assert (r["causal"], r["sign"], r["output_features"], r["reg_grad"], r["phase_noise"], r["freq_jitter"]) == (
        False, "repulsive", "angle", False, 0.0, 0.0)
    assert r["reg_lambda"] == 0.1 and r["oscillators"] == 32  # the rest is kept
    assert p.causal is True and p.phase_noise == 0.03  # the config itself is not modified


# == 9. training: noise only in training, a tiny run logs R ==========================================================

@pytest.mark.parametrize("phase,differs", [
    ({}, False),
    ({"phase_noise": 0.03}, True),
    ({"freq_jitter": 0.02}, True),
    ({"seed_faithful": True, "phase_noise": 0.03, "freq_jitter": 0.02}, False),  # the original never applied them
], ids=["none", "noise", "jitter", "faithful"])
def test_layer_noise_and_jitter_only_in_training(phase, differs):
    layer = KuramotoAttention(layer_config(oscillators=4, **phase))  # dropout 0: only noise/jitter can differ
    x = normal(22, (2, 8, 16), 3.0)
    params = init_layer(layer, x)
    train = lambda rng: apply_layer_jit(layer, params, x, deterministic=False, rng=rng)  # noqa: E731
    evaluate = lambda: apply_layer_jit(layer, params, x)  # noqa: E731
    e = evaluate()
    np.testing.assert_array_equal(e, evaluate())
    t1, t2 = train(_key(21)), train(_key(22))
    np.testing.assert_array_equal(t1, train(_key(21)))  # reproducible for a given rng
    if differs:
        assert float(jnp.abs(t1 - e).max()) > 1e-5 and float(jnp.abs(t1 - t2).max()) > 1e-5
    else:
        np.testing.assert_allclose(t1, e, atol=1e-6)


def test_model_training_forward_noisy_eval_deterministic():
    """The tiny model with wt2_kpc_diverse's phase settings (noise 0.03, jitter 0.02; dropout is 0 in tiny, so the
    noise and the jitter are the only randomness of the training forward)."""
    config = phase_configs.get_config("tiny+wt2_kpc_diverse")
    assert config.model.phase.phase_noise == 0.03 and config.model.phase.freq_jitter == 0.02
    assert config.model.dropout == 0.0 and config.model.attn_dropout == 0.0
    _, _, params = _tiny_model("tiny")  # same parameter shapes: noise and jitter add no parameters
    model = build_model(config.model, VOCAB)
    tokens = jnp.asarray(np.random.default_rng(23).integers(0, VOCAB, (2, 32)))
    evaluate = lambda: _logits(model, params, tokens)  # noqa: E731
    train = lambda rng: _logits(model, params, tokens, deterministic=False, rng=rng)  # noqa: E731
    e = evaluate()
    np.testing.assert_array_equal(e, evaluate())
    t1, t2 = train(_key(24)), train(_key(25))
    assert float(jnp.abs(t1 - e).max()) > 1e-4
    assert float(jnp.abs(t1 - t2).max()) > 1e-4


@pytest.mark.slow
def test_tiny_phase_run_logs_order_parameters(tmp_path):
    from wavejax.train.logging import read_metrics
    from wavejax.train.loop import Trainer

    config = apply_overrides(phase_configs.get_config("tiny"), {
        "train.steps": 6, "train.eval_every": 3, "train.eval_batches": 2, "train.sample_tokens": 0,
        "train.progress": False, "train.log_every": 3, "train.batch_size": 8, "train.checkpoint_every": 100,
        "model.phase.phase_noise": 0.03, "model.phase.freq_jitter": 0.02,
        "model.phase.reg_lambda": 0.1, "model.phase.reg_mode": "center",
    })
    workdir = tmp_path / "run"
    trainer = Trainer(config, str(workdir))
    try:
        summary = trainer.run()
        again = [trainer.eval_losses(), trainer.eval_losses()]  # eval is deterministic despite noise and jitter
    finally:
        trainer.close()
    assert summary["step"] == 6 and np.isfinite(summary["val_loss"])
    np.testing.assert_array_equal(again[0], again[1])
    records = read_metrics(str(workdir))
    for split in ("train", "val"):
        rows = [r for r in records if r["split"] == split]
        assert [r["step"] for r in rows] == [3, 6], (split, rows)
        for row in rows:
            for name in ("R_tokens", "R_channels", "R_layer"):
                key = f"seg1_0/attn/{name}"
                heads = [row[f"{key}/{h}"] for h in range(config.model.n_head)]  # one entry per head
                assert all(0.0 <= v <= 1.0 for v in [row[key], *heads]), (split, key, row)
                assert row[key] == pytest.approx(np.mean(heads), abs=1e-6)
                assert f"{key}/{config.model.n_head}" not in row
    train = [r for r in records if r["split"] == "train"]
    assert all(r["aux_loss"] > 0 for r in train)  # the coherence penalty (center mode) is in the training loss


# == 10. optimiser ===================================================================================================

def _by_path(tree) -> dict:
    return {jax.tree_util.keystr(p): v for p, v in jax.tree_util.tree_flatten_with_path(tree)[0]}


def test_phasegpt_decay_mask():
    _, _, params = _tiny_model("tiny")
    leaves = _by_path(decay_mask(params, "phasegpt"))
    phase = "['seg1_0']['attn']"
    decayed = [f"{phase}['omega']", f"{phase}['coupling']", f"{phase}['to_phase']['kernel']",
               f"{phase}['from_phase']['kernel']", "['ln_f']['scale']", "['seg1_0']['ln1']['scale']",
               "['seg0_0']['ln2']['scale']", "['seg0_0']['attn']['proj']['qkv']['kernel']"]
    kept = ["['embed']['wte']['embedding']", "['embed']['wpe']['embedding']", f"{phase}['to_phase']['bias']",
            f"{phase}['from_phase']['bias']", "['ln_f']['bias']", "['seg0_0']['mixer']['up']['bias']"]
    for name in decayed:
        assert leaves[name] is True, name
    for name in kept:
        assert leaves[name] is False, name
    assert all(v == (not (k.endswith("['bias']") or k.endswith("['embedding']"))) for k, v in leaves.items())
    matrices = _by_path(decay_mask(params, "matrices"))  # nanoGPT's: kernels and embeddings only
    assert not matrices[f"{phase}['omega']"] and not matrices["['ln_f']['scale']"]
    assert matrices["['embed']['wte']['embedding']"] and matrices[f"{phase}['to_phase']['kernel']"]
    assert all(jax.tree.leaves(decay_mask(params, "all")))


def test_phasegpt_decay_mask_reaches_adamw():
    """With zero gradients AdamW's update is pure decay: decayed leaves shrink by lr * wd, the rest stay put."""
    config = phase_configs.get_config("tiny")
    config.train.warmup_steps = 0
    assert config.train.decay_mask == "phasegpt"
    _, _, params = _tiny_model("tiny")
    params = jax.tree.map(jnp.ones_like, params)
    tx, lr = optim.make_optimizer(config.train)
    updates, _ = jax.jit(lambda p: tx.update(jax.tree.map(jnp.zeros_like, p), tx.init(p), p))(params)
    mask = decay_mask(params, "phasegpt")
    expected = -float(lr(0)) * config.train.weight_decay
    for u, m in zip(jax.tree.leaves(updates), jax.tree.leaves(mask)):
        np.testing.assert_allclose(u, expected if m else 0.0, rtol=1e-5, atol=1e-12)


def test_cosine_clamp_schedule():
    t = phase_configs.get_config().train  # lr 3e-4, min_lr 3e-5 (floor 0.1), warmup 100, 5000 steps
    assert t.schedule == "cosine_clamp"
    lr, peak, floor, w, n = optim.schedule(t), t.lr, t.min_lr / t.lr, t.warmup_steps, t.steps
    for s in (0, 1, 50, 99):
        assert float(lr(s)) == pytest.approx(peak * s / w, rel=1e-5, abs=1e-12)  # f(0) = 0 as the original's LambdaLR
    for s in (100, 1000, 2550, 4000, 4500, 4900, 5000, 7000):
        p = min((s - w) / (n - w), 1.0)
        assert float(lr(s)) == pytest.approx(peak * max(floor, 0.5 * (1 + math.cos(math.pi * p))), rel=1e-5), s
    assert float(lr(4900)) == pytest.approx(t.min_lr, rel=1e-5)  # clamped at the floor before the end
    # plain cosine goes to min_lr along min + (peak - min) (1 + cos) / 2 instead
    t.schedule = "cosine"
    assert float(optim.schedule(t)(2550)) == pytest.approx(t.min_lr + (peak - t.min_lr) * 0.5, rel=1e-4)
    t.schedule, t.decay_steps = "cosine_clamp", 2100  # decay_steps, when set, is the horizon
    assert float(optim.schedule(t)(1100)) == pytest.approx(peak * 0.5, rel=1e-5)


def test_seed_faithful_against_an_explicit_flag_is_one_sentence_naming_both():
    config = phase_configs.get_config("tiny+faithful")
    config.model.phase.causal = True  # the default; faithful runs False: allowed, the default is not a choice
    validate(config)
    config.model.phase.phase_noise = 0.1  # set by hand against the original's 0
    with pytest.raises(ConfigError, match=r"model.phase.seed_faithful=True runs the original's phase_noise=0.0, but "
                                          r"model.phase.phase_noise is set to 0.1; drop one of the two."):
        validate(config)
