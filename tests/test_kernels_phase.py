"""The fused phase-attention kernel (pallas_kernels/kuramoto_attention.py), in interpret mode on CPU.

1. θ^T and the gradients w.r.t. θ⁰, ω and K equal kuramoto_dynamics (the lax.scan reference) over shapes with ragged
   tails (S not a power of two, O not a multiple of the channel block), causal with both normalisations and
   non-causal, both signs, ω per head or per batch; float32 relative error < 1e-4, bfloat16 inputs < 1e-2; one case
   against the pairwise [B,H,S,S,O] coupling;
2. per-step noise: the kernel given step_noise's draws equals the reference with the same noise key (θ^T and grads);
3. causality: changing the tokens after i leaves θ^T of tokens 0..i unchanged (and the non-causal mode does not);
4. rows with (nearly) nothing to average over (S = 1, the "length" norm's first tokens, padded rows) stay finite;
5. float64 check_grads (reverse mode: the kernel is a custom_vjp) on a tiny shape;
6. the tiny phase model with model.phase.impl = "pallas" gives the "xla" model's loss and gradients (training mode,
   with phase noise and frequency jitter); config checks; under an 8-device
   data x fsdp mesh the dynamics run per device (shard_map) and equal one device's;
7. the kernels pass Pallas' Triton lowering for CUDA (no GPU needed); experiments/benchmarks/bench_kernels.py --kernels phase runs.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from pallas_kernels import kuramoto_attention, lower_for_gpu
from pallas_kernels.kuramoto_attention import kuramoto_dynamics_pallas, step_noise
from wavejax.config import set_value, validate
from wavejax.errors import ConfigError
from wavejax.ops.phase import kuramoto_coupling_reference, kuramoto_dynamics

from conftest import configs, run_with_8_devices

phase_configs = configs("phase")

# Interpret mode on any backend (the checks use blocks a GPU build would not pick); the compiled Triton kernels are
# checked by the GPU-only test at the end and by the Triton lowering test.
fused_kuramoto_steps = functools.partial(kuramoto_attention.fused_kuramoto_steps, interpret=True)
on_gpu = pytest.mark.skipif(jax.default_backend() != "gpu", reason="needs a GPU (compiled Triton kernels)")


def phases(seed, shape, dtype=np.float32):
    """θ⁰ = π tanh(N(0,1)), as the layer draws them from its projection."""
    return (np.pi * np.tanh(np.random.default_rng(seed).standard_normal(shape))).astype(dtype)


def normal(seed, shape, scale=1.0):
    return (scale * np.random.default_rng(seed).standard_normal(shape)).astype(np.float32)


def rel_err(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return np.abs(a - b).max() / np.abs(b).max()


def value_and_grads(fn, args, cotangent):
    out, pullback = jax.vjp(fn, *args)
    return out, pullback(cotangent)


def inputs(b, h, s, o, omega_batched=False, seed=0):
    omega_shape = (b, h, 1, o) if omega_batched else (h, 1, o)
    return (phases(seed, (b, h, s, o)), normal(seed + 1, omega_shape, 0.5),
            np.random.default_rng(seed + 2).uniform(0.5, 2.0, h).astype(np.float32))


# == 1. against the reference ==========================================================================================

CASES = [  # b, h, s, o, causal, causal_norm, sign, block_o, omega per batch, where the backward gets θ^t
    (2, 3, 13, 5, True, "count", -1.0, 4, False, "stored"),  # ragged S (13 -> 16) and O (5 -> 8)
    (2, 3, 13, 5, True, "count", -1.0, 4, False, "recompute"),
    (1, 2, 32, 8, True, "count", 1.0, 8, True, "stored"),  # S a power of two; repulsive; ω per batch (jitter)
    (2, 2, 37, 6, True, "length", -1.0, 4, False, "recompute"),  # the original's 1/S scale, causal; O 6 -> 8
    (2, 2, 21, 4, False, "count", 1.0, 4, True, "stored"),  # the faithful mode: non-causal, repulsive
]


@pytest.mark.parametrize("b,h,s,o,causal,norm,sign,block_o,omega_batched,backward", CASES)
def test_forward_and_gradients_match_the_scan_reference(b, h, s, o, causal, norm, sign, block_o, omega_batched,
                                                        backward):
    theta0, omega, k = inputs(b, h, s, o, omega_batched)
    cot = normal(9, theta0.shape)
    settings = dict(steps=5, dt=0.1, sign=sign, causal=causal, causal_norm=norm)
    kernel = jax.jit(lambda *a: value_and_grads(
        lambda *x: fused_kuramoto_steps(*x, block_o=block_o, backward=backward, **settings), a[:3], a[3]))
    reference = jax.jit(lambda *a: value_and_grads(lambda *x: kuramoto_dynamics(*x, **settings), a[:3], a[3]))
    (out, grads), (ref_out, ref_grads) = kernel(theta0, omega, k, cot), reference(theta0, omega, k, cot)
    assert out.shape == theta0.shape and grads[1].shape == omega.shape and grads[2].shape == k.shape
    assert rel_err(out, ref_out) < 1e-4
    for name, g, rg in zip(("theta0", "omega", "K"), grads, ref_grads):
        assert rel_err(g, rg) < 1e-4, name


def test_matches_the_pairwise_coupling_reference():
    theta0, omega, k = inputs(1, 2, 11, 3, seed=3)
    settings = dict(steps=4, dt=0.1, sign=-1.0, causal=True, causal_norm="count")
    out = fused_kuramoto_steps(theta0, omega, k, block_o=4, **settings)
    pairwise = kuramoto_dynamics(theta0, omega, k, coupling_fn=kuramoto_coupling_reference, **settings)
    assert rel_err(out, pairwise) < 1e-4


@pytest.mark.slow
def test_bfloat16_inputs_match_the_reference_within_1e_2():
    theta0, omega, k = inputs(1, 2, 19, 4, seed=5)
    wide = [jnp.asarray(a, jnp.bfloat16).astype(jnp.float32) for a in (theta0, omega, k)]  # same rounded numbers
    cot = normal(6, theta0.shape)
    settings = dict(steps=5, dt=0.1, sign=-1.0, causal=True, causal_norm="count")
    out, grads = jax.jit(lambda *a: value_and_grads(lambda *x: fused_kuramoto_steps(*x, **settings), a[:3], a[3]))(
        *[a.astype(jnp.bfloat16) for a in wide], jnp.asarray(cot, jnp.bfloat16))
    assert out.dtype == jnp.bfloat16 and all(g.dtype == jnp.bfloat16 for g in grads)
    ref_out, ref_grads = value_and_grads(lambda *x: kuramoto_dynamics(*x, **settings), wide,
                                         jnp.asarray(cot, jnp.bfloat16).astype(jnp.float32))
    assert rel_err(out, ref_out) < 1e-2
    for name, g, rg in zip(("theta0", "omega", "K"), grads, ref_grads):
        assert rel_err(g, rg) < 1e-2, name


# == 2. noise ==========================================================================================================

@pytest.mark.slow
def test_noise_drawn_by_the_reference_law_gives_the_reference_result():
    theta0, omega, k = inputs(2, 2, 9, 4, seed=7)
    cot = normal(8, theta0.shape)
    key = jax.random.PRNGKey(11)
    settings = dict(steps=4, dt=0.1, sign=-1.0, causal=True, causal_norm="count", noise_key=key, noise_std=0.2)
    run = lambda dynamics: jax.jit(lambda *a: value_and_grads(  # noqa: E731
        lambda *x: dynamics(*x, **settings), a[:3], a[3]))(theta0, omega, k, cot)
    (out, grads), (ref_out, ref_grads) = run(kuramoto_dynamics_pallas), run(kuramoto_dynamics)
    quiet = jax.jit(lambda *a: kuramoto_dynamics(*a, **{**settings, "noise_key": None}))(theta0, omega, k)
    assert np.abs(np.asarray(ref_out) - np.asarray(quiet)).max() > 0.1  # the noise matters
    assert rel_err(out, ref_out) < 1e-4
    for name, g, rg in zip(("theta0", "omega", "K"), grads, ref_grads):
        assert rel_err(g, rg) < 1e-4, name
    xi, direct = jax.jit(lambda: (step_noise(key, 4, theta0.shape)[2],
                                  jax.random.normal(jax.random.fold_in(key, 2), theta0.shape)))()
    np.testing.assert_array_equal(xi, direct)


def test_noise_gradient_is_noise_std_times_the_state_cotangent():
    """∂θ^T/∂ξ^{T-1} = σ (the last increment's noise enters θ^T through the wrap only)."""
    theta0, omega, k = inputs(1, 1, 6, 2, seed=12)
    xi = normal(13, (1, 3, 1, 6, 2))
    cot = normal(14, theta0.shape)
    f = lambda xi: fused_kuramoto_steps(theta0, omega, k, steps=3, dt=0.1, sign=-1.0, causal=True,  # noqa: E731
                                        noise=xi, noise_std=0.3, backward="recompute")
    (dxi,) = jax.vjp(f, xi)[1](cot)
    np.testing.assert_allclose(np.asarray(dxi)[:, 2], 0.3 * cot, rtol=1e-6)
    assert np.abs(np.asarray(dxi)[:, 0]).max() > 0


# == 3. causality ======================================================================================================

@pytest.mark.parametrize("causal", [True, False])
def test_outputs_do_not_depend_on_later_tokens_when_causal(causal):
    b, h, s, o, i = 1, 2, 23, 4, 9
    theta0, omega, k = inputs(b, h, s, o, seed=15)
    changed = theta0.copy()
    changed[:, :, i + 1:] = phases(16, changed[:, :, i + 1:].shape)
    run = jax.jit(lambda th: fused_kuramoto_steps(th, omega, k, steps=5, dt=0.1, sign=-1.0, causal=causal))
    out, out2 = np.asarray(run(theta0)), np.asarray(run(changed))
    if causal:
        np.testing.assert_array_equal(out[:, :, : i + 1], out2[:, :, : i + 1])
    else:  # the original's all-to-all coupling leaks the future
        assert np.abs(out[:, :, : i + 1] - out2[:, :, : i + 1]).max() > 1e-3
    assert np.abs(out[:, :, i + 1:] - out2[:, :, i + 1:]).max() > 1e-2


# == 4. (nearly) empty rows ============================================================================================

@pytest.mark.parametrize("s,norm", [(1, "count"), (1, "length"), (3, "length")])
def test_rows_with_little_or_nothing_to_average_stay_finite(s, norm):
    theta0, omega, k = inputs(1, 2, s, 3, seed=17)
    cot = normal(18, theta0.shape)
    settings = dict(steps=3, dt=0.1, sign=-1.0, causal=True, causal_norm=norm)
    out, grads = value_and_grads(lambda *x: fused_kuramoto_steps(*x, **settings), (theta0, omega, k), cot)
    ref_out, ref_grads = value_and_grads(lambda *x: kuramoto_dynamics(*x, **settings), (theta0, omega, k), cot)
    assert all(np.isfinite(np.asarray(a)).all() for a in (out, *grads))
    for a, ref in zip((out, *grads), (ref_out, *ref_grads)):  # at S = 1 the coupling and dK are exactly 0
        np.testing.assert_allclose(a, ref, rtol=1e-4, atol=1e-6)


# == 5. float64 gradient check =========================================================================================

@pytest.mark.parametrize("causal,backward", [(True, "stored"), (False, "recompute")])
def test_check_grads_float64(causal, backward):
    with jax.enable_x64(True):
        theta0, omega, k = (np.asarray(a, np.float64) for a in inputs(1, 2, 5, 2, seed=19))
        run = jax.jit(lambda th, om, kk: fused_kuramoto_steps(th, om, kk, steps=3, dt=0.1, sign=-1.0, causal=causal,
                                                              block_o=2, backward=backward))
        assert run(theta0, omega, k).dtype == jnp.float64
        check_grads(run, (theta0, omega, k), order=1, modes=("rev",))


# == 6. the model switch ===============================================================================================

@pytest.mark.slow
def test_tiny_phase_model_loss_and_grads_equal_between_impls():
    from wavejax.models.gpt import build_model

    tokens = np.random.default_rng(0).integers(0, 65, (2, 24)).astype(np.int32)
    targets = np.roll(tokens, -1, axis=1)
    noisy = {"model.phase.phase_noise": 0.05, "model.phase.freq_jitter": 0.1}  # training-only paths, same rng
    results, params = {}, None
    for impl in ("xla", "pallas"):
        config = phase_configs.get_config("tiny+pallas" if impl == "pallas" else "tiny")
        for key, value in noisy.items():
            set_value(config, key, value)
        validate(config)
        model = build_model(config.model, 65)
        if params is None:
            params = jax.jit(model.init, static_argnums=2)(jax.random.PRNGKey(0), tokens, True)

        def loss(params, model=model):
            logits = model.apply(params, tokens, False, rngs={"dropout": jax.random.PRNGKey(1)})
            logp = jax.nn.log_softmax(logits.astype(jnp.float32))
            return -jnp.take_along_axis(logp, targets[..., None], axis=-1).mean()

        results[impl] = jax.jit(jax.value_and_grad(loss))(params)
    (loss_x, grads_x), (loss_p, grads_p) = results["xla"], results["pallas"]
    np.testing.assert_allclose(loss_p, loss_x, rtol=1e-5)
    errors = jax.tree.map(lambda gp, gx: float(np.abs(gp - gx).max() / max(np.abs(gx).max(), 1e-12)), grads_p, grads_x)
    worst = max(jax.tree_util.tree_leaves_with_path(errors), key=lambda leaf: leaf[1])
    assert worst[1] < 1e-4, jax.tree_util.keystr(worst[0])
    phase_grads = {jax.tree_util.keystr(p): g for p, g in jax.tree_util.tree_leaves_with_path(grads_p)
                   if "omega" in jax.tree_util.keystr(p) or "coupling" in jax.tree_util.keystr(p)}
    assert len(phase_grads) == 2 and all(np.abs(np.asarray(g)).max() > 0 for g in phase_grads.values())


def test_bad_impl_is_one_sentence_and_xla_is_the_default():
    assert phase_configs.get_config().model.phase.impl == "xla"
    validate(phase_configs.get_config("tiny+pallas"))
    config = phase_configs.get_config("tiny")
    set_value(config, "model.phase.impl", "triton")
    with pytest.raises(ConfigError, match="model.phase.impl must be one of") as err:
        validate(config)
    assert "\n" not in str(err.value) and str(err.value).endswith(".")


def test_bad_kernel_arguments_are_one_sentence():
    theta0, omega, k = inputs(1, 2, 4, 4)
    with pytest.raises(ValueError, match="power of two"):
        fused_kuramoto_steps(theta0, omega, k, steps=2, dt=0.1, sign=-1.0, causal=True, block_o=3)
    with pytest.raises(ValueError, match="backward must be one of"):
        fused_kuramoto_steps(theta0, omega, k, steps=2, dt=0.1, sign=-1.0, causal=True, backward="remat")
    with pytest.raises(ValueError, match=r"coupling_k must be \[H\]"):
        fused_kuramoto_steps(theta0, omega, k[:1], steps=2, dt=0.1, sign=-1.0, causal=True)


@pytest.mark.slow  # a subprocess with 8 CPU devices (~7 s)
def test_under_a_data_fsdp_mesh_the_kernel_runs_per_device_and_matches_one_device():
    """A sharded jit cannot split the kernel's custom call, so under a 2 x 4 mesh the layer's dynamics run through
    shard_map over the batch; loss and the gradients w.r.t. θ⁰, ω and K (the latter two summed over the shards)
    equal one device's."""
    result = run_with_8_devices("phase_mesh.py", timeout=300)
    assert result["shard_map"]
    assert max(result["rel"]) < 1e-5, result["rel"]


# == 7. Triton lowering and the benchmark ==============================================================================

@pytest.mark.parametrize("causal,noise,backward", [(True, False, "recompute"), (False, True, "stored")])
def test_kernels_lower_to_triton_for_cuda(causal, noise, backward):
    """Forward and backward pass Pallas' Triton lowering for CUDA on this CPU machine, at a ragged S = 200 (padded to
    256) and the Phase A channel count O = 32."""
    theta = jax.ShapeDtypeStruct((2, 3, 200, 32), jnp.float32)
    omega = jax.ShapeDtypeStruct((3, 1, 32), jnp.float32)
    k = jax.ShapeDtypeStruct((3,), jnp.float32)
    xi = jax.ShapeDtypeStruct((2, 10, 3, 200, 32), jnp.float32) if noise else None

    def loss(theta, omega, k, xi):
        return kuramoto_attention.fused_kuramoto_steps(theta, omega, k, steps=10, dt=0.1, sign=-1.0, causal=causal,
                                                       noise=xi, noise_std=0.1 if noise else 0.0,
                                                       backward=backward, interpret=False).sum()

    forward = lower_for_gpu(loss, theta, omega, k, xi).as_text()
    grads = lower_for_gpu(jax.grad(loss, argnums=(0, 1, 2)), theta, omega, k, xi).as_text()
    # (the gradient alone may drop the forward kernel: the recompute backward needs only the inputs, and newer JAX
    # removes the unused forward call)
    assert 'name = "kuramoto_attention_forward"' in forward and 'name = "kuramoto_attention_backward"' in grads
    assert "__gpu$xla.gpu.triton" in forward and "__gpu$xla.gpu.triton" in grads


@pytest.mark.slow
def test_phase_bench_prints_both_impls_with_consistent_ratios(capsys):
    from experiments.benchmarks import bench_kernels

    bench_kernels.main(["--kernels", "phase", "--per_kernel", "--phase_shapes", "1,2,20,4", "--phase_steps", "3",
                        "--reps", "1"])
    out = capsys.readouterr().out
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in out.splitlines() if line.startswith("| phase")]
    assert [r[2].split(",")[0] for r in rows] == ["xla", "pallas (stored", "pallas (recompute"]
    xla_ms = float(rows[0][4])
    for r in rows:
        assert float(r[8].rstrip("×")) == pytest.approx(xla_ms / float(r[4]), rel=0.05, abs=0.01)
    for r in rows[1:]:
        assert float(r[9]) < 1e-4 and float(r[10]) < 1e-4  # angular θ^T error and gradient error
    assert ("interpret mode" in out) == (jax.default_backend() == "cpu")


@pytest.mark.parametrize("text", ["1,2,3", "1,2,x,4", "1,2,0,4"])
def test_phase_bench_rejects_bad_shapes(text):
    import argparse

    from experiments.benchmarks.kernels import phase as phase_kernel

    with pytest.raises(argparse.ArgumentTypeError, match="B,H,S,O"):
        phase_kernel._shapes(text)


@on_gpu
@pytest.mark.parametrize("backward,block_o", [("stored", 8), ("recompute", 16)])
def test_compiled_kernel_matches_the_reference_on_a_gpu(backward, block_o):
    """The Triton kernels themselves (interpret=False) at a ragged S = 200 and O = 32: θ^T on the circle and the
    gradients within 1e-4 of the XLA scan."""
    theta0, omega, k = inputs(4, 12, 200, 32, seed=21)
    cot = normal(22, theta0.shape)
    settings = dict(steps=10, dt=0.1, sign=-1.0, causal=True, causal_norm="count")
    out, grads = jax.jit(lambda *a: value_and_grads(lambda *x: kuramoto_attention.fused_kuramoto_steps(
        *x, backward=backward, block_o=block_o, interpret=False, **settings), a[:3], a[3]))(theta0, omega, k, cot)
    ref_out, ref_grads = jax.jit(lambda *a: value_and_grads(lambda *x: kuramoto_dynamics(*x, **settings), a[:3], a[3]))(
        theta0, omega, k, cot)
    d = np.asarray(out, np.float64) - np.asarray(ref_out, np.float64)
    assert np.abs((d + np.pi) % (2 * np.pi) - np.pi).max() < 1e-4 * np.pi  # a phase at ±π may wrap either way
    for name, g, rg in zip(("theta0", "omega", "K"), grads, ref_grads):
        assert rel_err(g, rg) < 1e-4, name
