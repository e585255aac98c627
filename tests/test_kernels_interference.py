"""The interference attention Pallas kernel (pallas_kernels/interference_attention.py), in interpret mode on CPU.

1. forward output and omega/phase/amp/v gradients equal the dense reference (wavejax/ops/wave_attention.py) over
   shapes with ragged tails (T not a multiple of the blocks), W and D not powers of two, both normalisations;
   float32 relative error < 1e-4, bfloat16 inputs < 1e-2;
2. by hand: equal frequencies and phases make every α = 1, so the output is the running sum (or mean) of v;
3. causality: changing the inputs after position i leaves outputs 0..i unchanged;
4. (nearly) empty rows: amplitudes at the model's floor 1e-8 match the reference, finite; all-zero amplitudes (rows
   summing to 0, where the reference divides 0 by 0) give zeros and finite gradients;
5. float64 check_grads (reverse mode: the kernel is a custom_vjp) on a tiny shape;
6. the wave model with model.wave.impl = "pallas" gives the "xla" model's loss and gradients, and under
   an 8-device data x fsdp mesh (kernel per device through shard_map) one device's; config checks;
7. the kernels pass Pallas' Triton lowering for CUDA (checked here without a GPU) and, on a GPU, the compiled kernels
   match the reference; the benchmark script runs.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax.core.meta import unbox
from jax.test_util import check_grads

from pallas_kernels import interference_attention as IA
from pallas_kernels import lower_for_gpu
from pallas_kernels.interference_attention import interference_attention_reference
from wavejax.config import set_value, validate
from wavejax.errors import ConfigError

from conftest import configs, run_with_8_devices

wave_configs = configs("wave")

# Tiny blocks run in interpret mode on any backend (Triton needs blocks >= 16); the compiled kernels are checked by
# the Triton lowering test.
interference_flash_attention = functools.partial(IA.interference_flash_attention, interpret=True)
on_gpu = pytest.mark.skipif(jax.default_backend() != "gpu", reason="needs a GPU (compiled Triton kernels)")


def wave_inputs(seed, b, h, t, w, d, dtype=np.float32):
    """omega, phase ~ N(0, 1), amp = softplus(N(0, 1)) + 1e-8 (as the model makes them), v ~ N(0, 1)."""
    rng = np.random.default_rng(seed)
    omega, phase, logits = (rng.standard_normal((b, h, t, w)) for _ in range(3))
    amp = np.logaddexp(0.0, logits) + 1e-8
    v = rng.standard_normal((b, h, t, d))
    return tuple(np.asarray(a, dtype) for a in (omega, phase, amp, v))


def value_and_grads(attention, inputs, cotangent):
    """(out, (d omega, d phase, d amp, d v)) of out = attention(*inputs) pulled back along `cotangent`."""
    out, pullback = jax.vjp(attention, *inputs)
    return out, pullback(cotangent)


def rel_err(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return np.abs(a - b).max() / np.abs(b).max()


def kernel_and_reference(inputs, cotangent, normalize, block_q, block_k):
    kernel = jax.jit(lambda ins, ct: value_and_grads(
        lambda *a: interference_flash_attention(*a, normalize=normalize, block_q=block_q, block_k=block_k), ins, ct))
    reference = jax.jit(lambda ins, ct: value_and_grads(
        lambda *a: interference_attention_reference(*a, normalize), ins, ct))
    return kernel(inputs, cotangent), reference(inputs, cotangent)


# == 1. forward and gradients against the reference ===================================================================

CASES = [  # b, h, t, w, d, normalize, block_q, block_k
    (1, 2, 37, 5, 6, True, 8, 16),    # ragged tail 37 = 2·16 + 5; W = 5 padded to 8, D = 6 padded to 8
    (2, 1, 32, 8, 8, False, 16, 8),   # T a multiple of the blocks, unnormalised (the original)
    (1, 1, 20, 3, 4, True, 32, 32),   # one tile and one key block holding every position, padded to 32
]


@pytest.mark.parametrize("b,h,t,w,d,normalize,block_q,block_k", CASES)
def test_forward_and_gradients_match_the_dense_reference(b, h, t, w, d, normalize, block_q, block_k):
    inputs = wave_inputs(0, b, h, t, w, d)
    cotangent = np.random.default_rng(1).standard_normal((b, h, t, d)).astype(np.float32)
    (out, grads), (ref_out, ref_grads) = kernel_and_reference(inputs, cotangent, normalize, block_q, block_k)
    assert rel_err(out, ref_out) < 1e-4
    for name, g, rg in zip(("omega", "phase", "amp", "v"), grads, ref_grads):
        assert rel_err(g, rg) < 1e-4, name


@pytest.mark.slow
def test_bfloat16_inputs_match_the_reference_within_1e_2():
    inputs = tuple(jnp.asarray(a, jnp.bfloat16) for a in wave_inputs(2, 1, 2, 24, 4, 8))
    cotangent = jnp.asarray(np.random.default_rng(3).standard_normal((1, 2, 24, 8)), jnp.bfloat16)
    out, grads = jax.jit(lambda ins, ct: value_and_grads(
        lambda *a: interference_flash_attention(*a, normalize=True, block_q=8, block_k=8), ins, ct))(inputs, cotangent)
    assert out.dtype == jnp.bfloat16 and all(g.dtype == jnp.bfloat16 for g in grads)
    wide = tuple(a.astype(jnp.float32) for a in inputs)  # the reference on the same (bf16-rounded) numbers
    ref_out, ref_grads = value_and_grads(lambda *a: interference_attention_reference(*a, True), wide,
                                         cotangent.astype(jnp.float32))
    assert rel_err(out, ref_out) < 1e-2
    for name, g, rg in zip(("omega", "phase", "amp", "v"), grads, ref_grads):
        assert rel_err(g, rg) < 1e-2, name


# == 2. by hand ========================================================================================================

@pytest.mark.parametrize("normalize", [True, False])
def test_equal_waves_give_the_running_mean_or_sum_of_v(normalize):
    """ω and φ equal at every position: cos = 1, so I = E and α = 1 for every k <= q (up to the 1e-8 guard)."""
    b, h, t, w, d = 1, 1, 13, 3, 4
    _, _, amp, v = wave_inputs(4, b, h, t, w, d)
    omega = np.full((b, h, t, w), 0.7, np.float32)
    phase = np.full((b, h, t, w), -1.3, np.float32)
    out = np.asarray(interference_flash_attention(omega, phase, amp, v, normalize=normalize, block_q=8, block_k=8))
    running = np.cumsum(v, axis=2)
    want = running / np.arange(1, t + 1)[:, None] if normalize else running
    np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-5)


# == 3. causality ======================================================================================================

def test_outputs_do_not_depend_on_later_positions():
    b, h, t, w, d, i = 1, 2, 29, 4, 8, 13
    inputs = wave_inputs(5, b, h, t, w, d)
    later = wave_inputs(6, b, h, t, w, d)
    changed = tuple(np.concatenate([a[:, :, : i + 1], c[:, :, i + 1:]], axis=2) for a, c in zip(inputs, later))
    attend = jax.jit(lambda *a: interference_flash_attention(*a, normalize=True, block_q=8, block_k=8))
    out, out2 = np.asarray(attend(*inputs)), np.asarray(attend(*changed))
    np.testing.assert_array_equal(out[:, :, : i + 1], out2[:, :, : i + 1])
    assert np.abs(out[:, :, i + 1:] - out2[:, :, i + 1:]).max() > 1e-2  # the later outputs did change


# == 4. (nearly) empty rows ============================================================================================

def test_rows_at_the_amplitude_floor_match_the_reference_and_stay_finite():
    """amp = 1e-8 everywhere (softplus of very negative logits + 1e-8): S ≈ W·1e-16 is far below the 1e-8 guard,
    so every α ≈ 4e-16·W / 1e-8 and each row sums to almost nothing; the kernel must still match, without NaN."""
    b, h, t, w, d = 1, 1, 20, 3, 4
    omega, phase, _, v = wave_inputs(7, b, h, t, w, d)
    amp = np.full((b, h, t, w), 1e-8, np.float32)
    cotangent = np.random.default_rng(8).standard_normal((b, h, t, d)).astype(np.float32)
    (out, grads), (ref_out, ref_grads) = kernel_and_reference((omega, phase, amp, v), cotangent, True, 8, 8)
    assert np.abs(np.asarray(ref_out)).max() > 0.1  # the normalised rows are still weighted means of v
    assert rel_err(out, ref_out) < 1e-4
    for name, g, rg in zip(("omega", "phase", "amp", "v"), grads, ref_grads):
        assert np.isfinite(np.asarray(g)).all(), name
        assert rel_err(g, rg) < 1e-3, name  # amp's gradient ~1e8 is the sum of large cancelling terms


def test_all_zero_amplitudes_give_zeros_and_finite_gradients():
    """amp = 0 (which the model cannot produce, but the padding does): α = 0 / 1e-8 = 0, every row sums to 0; the
    reference divides 0 by 0 there, the kernel returns zeros."""
    b, h, t, w, d = 1, 1, 12, 2, 4
    omega, phase, _, v = wave_inputs(9, b, h, t, w, d)
    amp = np.zeros((b, h, t, w), np.float32)
    out, grads = jax.jit(lambda ins, ct: value_and_grads(
        lambda *a: interference_flash_attention(*a, normalize=True, block_q=8, block_k=8), ins, ct))(
        (omega, phase, amp, v), np.ones((b, h, t, d), np.float32))
    np.testing.assert_array_equal(np.asarray(out), 0.0)
    assert all(np.isfinite(np.asarray(g)).all() for g in grads)


# == 5. float64 gradient check =========================================================================================

@pytest.mark.parametrize("normalize", [True, False])
def test_check_grads_float64(normalize):
    with jax.enable_x64(True):
        inputs = wave_inputs(10, 1, 1, 11, 2, 3, np.float64)
        attend = jax.jit(lambda *a: interference_flash_attention(*a, normalize=normalize, block_q=8, block_k=8))
        assert attend(*inputs).dtype == jnp.float64
        check_grads(attend, inputs, order=1, modes=("rev",))


def test_bad_block_sizes_and_shapes_are_one_sentence():
    omega, phase, amp, v = wave_inputs(0, 1, 1, 8, 2, 4)
    with pytest.raises(ValueError, match="powers of two"):
        interference_flash_attention(omega, phase, amp, v, normalize=True, block_q=12)
    with pytest.raises(ValueError, match="must be >= 16"):
        IA.interference_flash_attention(omega, phase, amp, v, normalize=True, block_q=8, interpret=False)
    with pytest.raises(ValueError, match=r"\[B,H,T,W\]"):
        interference_flash_attention(omega, phase[:, :, :4], amp, v, normalize=True)


# == 6. the model switch ===============================================================================================

@pytest.mark.slow
def test_wave_model_with_the_pallas_kernel_gives_the_xla_loss_and_gradients():
    from wavejax.models.gpt import build_model

    tokens = np.random.default_rng(0).integers(0, 65, (2, 21)).astype(np.int32)  # ragged: 21 = 16 + 5
    results, params = {}, None
    for preset in ("tiny+interference", "tiny+pallas"):
        config = wave_configs.get_config(preset)
        set_value(config, "model.n_layer", 1)  # one block: interpret mode is slow
        validate(config)
        model = build_model(config.model, 65)
        if params is None:
            params = unbox(jax.jit(model.init, static_argnums=2)(jax.random.PRNGKey(0), tokens, True)["params"])

        def loss(p, model=model):
            logits = model.apply({"params": p}, tokens, True)
            return jnp.mean(jax.nn.logsumexp(logits, -1) - jnp.take_along_axis(logits, tokens[..., None], -1)[..., 0])

        results[preset] = jax.jit(jax.value_and_grad(loss))(params)
    (loss_xla, grads_xla), (loss_pallas, grads_pallas) = results.values()
    np.testing.assert_allclose(float(loss_pallas), float(loss_xla), rtol=1e-6)
    scale = max(float(jnp.abs(g).max()) for g in jax.tree.leaves(grads_xla))
    for g, g_ref in zip(jax.tree.leaves(grads_pallas), jax.tree.leaves(grads_xla)):
        np.testing.assert_allclose(np.asarray(g), np.asarray(g_ref), rtol=1e-4, atol=1e-5 * scale)


@pytest.mark.parametrize("overrides,message", [
    ({"model.wave.impl": "triton"}, "model.wave.impl must be one of"),
    ({"model.attn_dropout": 0.1}, "has no attention dropout"),
    ({"model.wave.interference_block": 24}, "power of two >= 16"),
    ({"model.wave.interference_block": 8}, "power of two >= 16"),
])
def test_bad_impl_settings_are_one_sentence(overrides, message):
    config = wave_configs.get_config("tiny+pallas")
    for key, value in overrides.items():
        set_value(config, key, value)
    with pytest.raises(ConfigError, match=message) as err:
        validate(config)
    assert "\n" not in str(err.value) and str(err.value).endswith(".")


def test_pallas_preset_validates_and_xla_is_the_default():
    default = wave_configs.get_config()
    assert default.model.wave.impl == "xla" and default.model.attn_dropout > 0
    config = wave_configs.get_config("pallas")  # the full-size model: the preset turns attention dropout off
    validate(config)
    assert (config.model.attention, config.model.wave.impl) == ("wave_interference", "pallas")
    # the impl only matters to the interference attention: dropout stays allowed with the cosine attention
    set_value(config, "model.attention", "wave_cosine")
    set_value(config, "model.attn_dropout", 0.1)
    validate(config)


@pytest.mark.slow  # a subprocess with 8 CPU devices
def test_under_a_data_fsdp_mesh_the_model_runs_the_kernel_per_device_and_matches_one_device():
    """A sharded jit cannot split the kernel's custom call, so under a 2 x 4 mesh the interference attention runs
    through shard_map over the batch; the tiny wave model's loss and gradients equal one device's."""
    result = run_with_8_devices("interference_mesh.py", timeout=300)
    assert result["shard_map"]
    assert result["loss"] < 1e-5 and result["grad"] < 1e-5, result


# == 7. GPU lowering without a GPU, and the benchmark script ===========================================================

@pytest.mark.parametrize("t,w,d,dtype", [(192, 48, 48, jnp.bfloat16), (200, 12, 64, jnp.float32)])
def test_kernels_lower_to_triton_for_cuda(t, w, d, dtype):
    """The forward and backward kernels pass Pallas' Triton lowering (unsupported ops or shapes fail here), lowered
    for CUDA on this CPU machine: the wave model's W = D = 48 in bf16, and a ragged T = 200 with W = 12."""
    x = jax.ShapeDtypeStruct((2, 4, t, w), dtype)
    v = jax.ShapeDtypeStruct((2, 4, t, d), dtype)

    def loss(omega, phase, amp, v):
        return IA.interference_flash_attention(omega, phase, amp, v, normalize=True, interpret=False).astype(
            jnp.float32).sum()

    text = lower_for_gpu(jax.grad(loss, argnums=(0, 1, 2, 3)), x, x, x, v).as_text()
    for name in ("interference_forward", "interference_backward"):
        assert f'name = "{name}"' in text
    assert "__gpu$xla.gpu.triton" in text


@on_gpu
@pytest.mark.parametrize("block", [32, 64])
def test_compiled_kernels_match_the_reference_on_a_gpu(block):
    """The Triton kernels themselves (interpret=False), bf16 inputs, ragged T, the wave model's W = D = 48: forward
    and gradients within 1e-2 of the dense reference in float32."""
    inputs = tuple(jnp.asarray(a, jnp.bfloat16) for a in wave_inputs(11, 2, 4, 200, 48, 48))
    cotangent = jnp.asarray(np.random.default_rng(12).standard_normal((2, 4, 200, 48)), jnp.bfloat16)
    out, grads = jax.jit(lambda ins, ct: value_and_grads(
        lambda *a: IA.interference_flash_attention(*a, normalize=True, block_q=block, block_k=block,
                                                   interpret=False), ins, ct))(inputs, cotangent)
    wide = tuple(a.astype(jnp.float32) for a in inputs)
    with jax.default_matmul_precision("highest"):
        ref_out, ref_grads = value_and_grads(lambda *a: interference_attention_reference(*a, True), wide,
                                             cotangent.astype(jnp.float32))
    assert rel_err(out, ref_out) < 1e-2
    for name, g, rg in zip(("omega", "phase", "amp", "v"), grads, ref_grads):
        assert rel_err(g, rg) < 1e-2, name


@pytest.mark.slow
def test_benchmark_prints_both_rows_with_consistent_ratios(capsys):
    from experiments.benchmarks import bench_kernels

    assert bench_kernels.main(["--kernels", "interference", "--per_kernel", "--lengths", "24", "--batch", "1", "--heads",
                               "1", "--interference_waves", "3", "--head_dim", "4", "--block_q", "8", "--block_k", "8",
                               "--reps", "1", "--warmup", "0"]) == 0
    out = capsys.readouterr().out
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in out.splitlines() if line.startswith("| T")]
    header, rows = cells[0], {r[1]: dict(zip(cells[0], r)) for r in cells[1:] if r[0] == "T=24"}
    assert header[:2] == ["T", "impl"] and set(rows) == {"xla", "pallas"}
    assert ("interpret mode" in out) == (jax.default_backend() == "cpu")
    xla_ms, pallas_ms = float(rows["xla"]["fwd+bwd ms"]), float(rows["pallas"]["fwd+bwd ms"])
    speedup = float(rows["pallas"]["fwd+bwd speed-up vs xla"].rstrip("×"))
    assert speedup == pytest.approx(xla_ms / pallas_ms, rel=0.05, abs=0.01)
    assert float(rows["pallas"]["max err vs xla"]) < 1e-5  # the timed kernel's output equals the XLA path's
    # T = 24 in blocks of 8: xla evaluates 3 x 24² trig per wave, pallas 4 x (the 6 causal 8x8 blocks) = 4 x 384
    causal = 24 * 25 / 2
    assert float(rows["xla"]["sin/cos per causal pair-wave"]) == pytest.approx(3 * 24 * 24 / causal, abs=0.01)
    assert float(rows["pallas"]["sin/cos per causal pair-wave"]) == pytest.approx(4 * 6 * 64 / causal, abs=0.01)
