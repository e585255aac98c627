"""PhaseGPT's dynamics (wavejax/ops/phase.py; spec: docs/specs/phasegpt.md): the O(S) mean-field coupling equals the
pairwise [B,H,S,S,O] reference (and both a float64 loop), the scanned dynamics equal an independent float64 Euler
integration, float64 check_grads through the dynamics and the layer, the signs of the coupling (the original's is
repulsive for K > 0), and the order parameters (the interpretability script's 0.88 for pure noise)."""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax.core.meta import unbox
from jax.test_util import check_grads
from phase_support import (
    PI,
    _key,
    _numpy_coupling,
    _numpy_dynamics,
    apply_layer,
    apply_layer_jit,
    assert_same_angles,
    init_layer,
    layer_config,
    normal,
    uniform,
)

from wavejax.models.phase import KuramotoAttention
from wavejax.ops.phase import (
    kuramoto_coupling,
    kuramoto_coupling_reference,
    kuramoto_dynamics,
    order_parameter_channels,
    order_parameter_interpret,
    order_parameter_layer,
    order_parameter_tokens,
    wrap,
)

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
