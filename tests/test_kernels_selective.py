"""The wave-selective attention Pallas kernel (pallas_kernels/selective_attention.py), in interpret mode on CPU.

1. forward output and q/k/v gradients equal the masked dense reference (wavejax.ops.selective) over shapes with ragged
   tails (T not a multiple of the blocks), an unpadded and a padded head dimension, W = 1, W > T, no wave token and
   every token a wave token; float32 relative error < 1e-4, bfloat16 inputs < 1e-2;
2. by hand: a local query with W = 1 (and position 0) sees only itself, so its output is its own value row;
3. causality: changing the tokens and wave flags after position i leaves outputs 0..i unchanged;
4. float64 check_grads (reverse mode: the kernel is a custom_vjp) on a tiny shape;
5. the tile schedule: every visible (query, key) pair lies inside the ranges the kernels loop over, and at
   fraction 0.25 the forward visits well under half the causal key blocks;
6. the harmonic model with model.harmonic.impl = "pallas" gives the "xla" model's logits; config checks;
7. the kernels pass Pallas' Triton lowering for CUDA (checked here without a GPU); experiments/benchmarks/bench_kernels.py.
"""

from __future__ import annotations

import functools
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from pallas_kernels import lower_for_gpu, selective_attention
from pallas_kernels.selective_attention import (
    scheduled_score_blocks,
    tile_schedule,
    wave_selective_attention_reference,
    wave_selective_mask,
)
from wavejax.config import set_value, validate
from wavejax.errors import ConfigError

from conftest import REPO, configs

harmonic_configs = configs("harmonic")

# The checks at tiny blocks and head dims run the kernels in interpret mode on any backend (Triton needs blocks >= 16);
# the compiled kernels are checked by the GPU-only test at the end and by the Triton lowering test.
wave_selective_flash_attention = functools.partial(selective_attention.wave_selective_flash_attention, interpret=True)
on_gpu = pytest.mark.skipif(jax.default_backend() != "gpu", reason="needs a GPU (compiled Triton kernels)")


def normal(seed, shape):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def random_waves(seed, b, t, fraction):
    return np.random.default_rng(seed).random((b, t)) < fraction


def value_and_grads(attention, q, k, v, cotangent):
    """(out, (dq, dk, dv)) of out = attention(q, k, v) pulled back along `cotangent`."""
    out, pullback = jax.vjp(attention, q, k, v)
    return out, pullback(cotangent)


def rel_err(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return np.abs(a - b).max() / np.abs(b).max()


# == 1. forward and gradients against the reference ===================================================================

CASES = [  # b, t, h, d, window, fraction, block_q, block_k
    (2, 37, 2, 8, 5, 0.25, 8, 16),    # ragged tail: 37 = 2·16 + 5
    (1, 48, 2, 16, 16, 0.25, 16, 16),  # T a multiple of the blocks
    (1, 33, 1, 6, 1, 0.3, 16, 8),     # W = 1, head dim 6 padded to 8
    (2, 24, 1, 8, 64, 0.0, 8, 8),     # W > T, no wave token: dense causal
    (1, 20, 2, 4, 3, 1.0, 16, 8),     # every token a wave token: dense causal
]


@pytest.mark.parametrize("b,t,h,d,window,fraction,block_q,block_k", CASES)
def test_forward_and_gradients_match_the_masked_reference(b, t, h, d, window, fraction, block_q, block_k):
    q, k, v, cot = (normal(s, (b, t, h, d)) for s in range(4))
    is_wave = random_waves(4, b, t, fraction)
    kernel = jax.jit(lambda q, k, v, ct: value_and_grads(
        lambda *a: wave_selective_flash_attention(*a, is_wave, window, block_q=block_q, block_k=block_k), q, k, v, ct))
    reference = jax.jit(lambda q, k, v, ct: value_and_grads(
        lambda *a: wave_selective_attention_reference(*a, jnp.asarray(is_wave), window), q, k, v, ct))
    (out, grads), (ref_out, ref_grads) = kernel(q, k, v, cot), reference(q, k, v, cot)
    assert rel_err(out, ref_out) < 1e-4
    for name, g, rg in zip("qkv", grads, ref_grads):
        assert rel_err(g, rg) < 1e-4, name


@pytest.mark.slow
def test_bfloat16_inputs_match_the_reference_within_1e_2():
    b, t, h, d, window = 1, 40, 2, 16, 6
    q, k, v, cot = (jnp.asarray(normal(s, (b, t, h, d)), jnp.bfloat16) for s in range(4))
    is_wave = random_waves(5, b, t, 0.25)
    out, grads = jax.jit(lambda q, k, v, ct: value_and_grads(
        lambda *a: wave_selective_flash_attention(*a, is_wave, window, block_q=8, block_k=16), q, k, v, ct)
    )(q, k, v, cot)
    assert out.dtype == jnp.bfloat16 and all(g.dtype == jnp.bfloat16 for g in grads)
    wide = [a.astype(jnp.float32) for a in (q, k, v, cot)]  # the reference on the same (bf16-rounded) numbers
    ref_out, ref_grads = value_and_grads(
        lambda *a: wave_selective_attention_reference(*a, jnp.asarray(is_wave), window), *wide)
    assert rel_err(out, ref_out) < 1e-2
    for name, g, rg in zip("qkv", grads, ref_grads):
        assert rel_err(g, rg) < 1e-2, name


# == 2. rows that see only themselves ==================================================================================

def test_local_rows_with_window_one_return_their_own_value():
    b, t, h, d = 1, 21, 1, 8
    q, k, v = (normal(s, (b, t, h, d)) for s in range(3))
    is_wave = np.zeros((b, t), bool)
    is_wave[0, [4, 11]] = True
    out = np.asarray(wave_selective_flash_attention(q, k, v, is_wave, 1, block_q=8, block_k=8))
    local = ~is_wave[0]
    np.testing.assert_allclose(out[0, local], v[0, local], rtol=1e-6, atol=1e-6)  # softmax over one key
    for pos in (4, 11):  # wave rows: the softmax-weighted mean over every earlier value
        s = (k[0, : pos + 1, 0] @ q[0, pos, 0]) / np.sqrt(d)
        p = np.exp(s - s.max())
        np.testing.assert_allclose(out[0, pos, 0], (p / p.sum()) @ v[0, : pos + 1, 0], rtol=1e-5, atol=1e-6)
    assert np.isfinite(out).all()


def test_rows_without_any_visible_key_give_zeros_and_finite_gradients():
    """Cannot happen through the mask (the diagonal is always visible), so empty one query tile's key range in the
    schedule: its rows must come out as zeros (the reference's convention), with zero, finite gradients."""
    from pallas_kernels.selective_attention import _flash

    b, t, h, d, block = 1, 16, 1, 8, 8
    q, k, v, cot = (normal(s, (b, t, h, d)) for s in range(4))
    schedule = tile_schedule(jnp.asarray(random_waves(2, b, t, 0.25)), 4, block, block)
    order = np.asarray(schedule.pop("order"))
    schedule["q_hi"] = schedule["q_hi"].at[:, 0].set(schedule["q_lo"][:, 0])  # tile 0 sees no key
    qp = q[:, order[0]]
    out, (dq, dk, dv) = jax.jit(lambda q, k, v, ct: value_and_grads(
        lambda *a: _flash(*a, schedule, 4, 1 / np.sqrt(d), block, block, True), q, k, v, ct)
    )(qp, k, v, cot[:, order[0]])
    out, dq = np.asarray(out), np.asarray(dq)
    assert all(np.isfinite(np.asarray(a)).all() for a in (out, dq, dk, dv))
    np.testing.assert_array_equal(out[:, :block], 0.0)
    np.testing.assert_array_equal(dq[:, :block], 0.0)
    assert np.abs(out[:, block:]).min() > 0


# == 3. causality ======================================================================================================

def test_outputs_do_not_depend_on_later_tokens_or_flags():
    b, t, h, d, window, i = 1, 29, 2, 8, 4, 13
    q, k, v = (normal(s, (b, t, h, d)) for s in range(3))
    is_wave = random_waves(7, b, t, 0.3)
    q2, k2, v2 = q.copy(), k.copy(), v.copy()
    for a, seed in ((q2, 10), (k2, 11), (v2, 12)):
        a[:, i + 1:] = normal(seed, a[:, i + 1:].shape)
    wave2 = is_wave.copy()
    wave2[:, i + 1:] = ~wave2[:, i + 1:]  # moves every later query between the wave and the local tiles
    attend = jax.jit(lambda q, k, v, w: wave_selective_flash_attention(q, k, v, w, window, block_q=8, block_k=8))
    out, out2 = np.asarray(attend(q, k, v, is_wave)), np.asarray(attend(q2, k2, v2, wave2))
    np.testing.assert_array_equal(out[:, : i + 1], out2[:, : i + 1])
    assert np.abs(out[:, i + 1:] - out2[:, i + 1:]).max() > 1e-2  # the later outputs did change


# == 4. float64 gradient check =========================================================================================

def test_check_grads_float64():
    b, t, h, d, window = 1, 11, 1, 4, 3
    is_wave = random_waves(8, b, t, 0.3)
    with jax.enable_x64(True):
        q, k, v = (np.random.default_rng(s).standard_normal((b, t, h, d)) for s in range(3))
        attend = jax.jit(lambda q, k, v: wave_selective_flash_attention(q, k, v, is_wave, window, block_q=8, block_k=8))
        assert attend(q, k, v).dtype == jnp.float64
        check_grads(attend, (q, k, v), order=1, modes=("rev",))


# == 5. the tile schedule ==============================================================================================

def visited_pairs(schedule, t, block_q, block_k):
    """Two [B,T,T] bool arrays over (position q, position k): pairs inside the forward / dq tile ranges and inside
    the dk/dv ranges (numpy, from the schedule's int arrays)."""
    s = {key: np.asarray(a) for key, a in schedule.items()}
    b = s["order"].shape[0]
    fwd, dkv = np.zeros((b, t, t), bool), np.zeros((b, t, t), bool)
    for row in range(b):
        tile_rows = s["order"][row].reshape(-1, block_q)
        for i, rows in enumerate(tile_rows):
            fwd[row, rows[:, None], np.arange(s["q_lo"][row, i] * block_k, s["q_hi"][row, i] * block_k)] = True
        for j in range(t // block_k):
            tiles = list(range(s["wave_lo"][row, j], s["wave_hi"][row, j]))
            tiles += range(max(s["local_lo"][row, j], s["wave_hi"][row, j]), s["local_hi"][row, j])
            assert len(tiles) == len(set(tiles))  # no query tile counted twice
            for i in tiles:
                dkv[row, tile_rows[i][:, None], np.arange(j * block_k, (j + 1) * block_k)] = True
    return fwd, dkv


@pytest.mark.parametrize("t,window,fraction,block_q,block_k", [(96, 8, 0.25, 16, 16), (64, 20, 0.4, 8, 16),
                                                                (64, 3, 0.1, 16, 8)])
def test_schedule_covers_every_visible_pair(t, window, fraction, block_q, block_k):
    is_wave = random_waves(9, 3, t, fraction)
    schedule = jax.jit(tile_schedule, static_argnums=(1, 2, 3))(jnp.asarray(is_wave), window, block_q, block_k)
    order = np.asarray(schedule["order"])
    assert (np.sort(order, axis=1) == np.arange(t)).all()  # a permutation
    mask = np.asarray(wave_selective_mask(jnp.asarray(is_wave), window))
    fwd, dkv = visited_pairs(schedule, t, block_q, block_k)
    assert not (mask & ~fwd).any() and not (mask & ~dkv).any()


def test_schedule_work_scales_with_fraction_and_window():
    """Forward score blocks visited, as a fraction of causal attention's T/bk·(T/bk + 1)/2 blocks: about
    f + (1 - f)·(bq/(1 - f) + W + bk)/(T/2) (wave tiles scan ~T/2 keys on average; a local tile spans ~bq/(1 - f)
    positions plus the window), so it falls with the wave fraction and the window."""
    t, block = 1024, 32
    n = t // block

    def visited(fraction, window):
        is_wave = random_waves(10, 2, t, fraction)
        schedule = jax.jit(tile_schedule, static_argnums=(1, 2, 3))(jnp.asarray(is_wave), window, block, block)
        return np.asarray(scheduled_score_blocks(schedule)) / (n * (n + 1) // 2)

    quarter = visited(0.25, 32)
    assert (quarter < 0.5).all(), quarter  # 0.43 and 0.49 on these two rows
    assert (visited(0.125, 32) < quarter - 0.08).all()
    assert (visited(0.25, 128) > quarter + 0.1).all()
    assert (visited(0.0, 32) < 0.2).all()


def test_bad_block_sizes_are_one_sentence():
    x = np.zeros((1, 8, 1, 4), np.float32)
    with pytest.raises(ValueError, match="powers of two"):
        wave_selective_flash_attention(x, x, x, np.zeros((1, 8), bool), 2, block_q=12)
    with pytest.raises(ValueError, match="must be >= 16"):
        selective_attention.wave_selective_flash_attention(x, x, x, np.zeros((1, 8), bool), 2, block_q=8,
                                                           interpret=False)


# == 6. the model switch ===============================================================================================

@pytest.mark.slow
def test_harmonic_model_with_the_pallas_kernel_gives_the_xla_logits():
    from wavejax.models.gpt import build_model

    logits = {}
    tokens = np.random.default_rng(0).integers(0, 65, (2, 40)).astype(np.int32)
    params = None
    for impl in ("xla", "pallas"):
        config = harmonic_configs.get_config("tiny+pallas" if impl == "pallas" else "tiny")
        model = build_model(config.model, 65)
        if params is None:
            params = jax.jit(model.init, static_argnums=2)(jax.random.PRNGKey(0), tokens, True)
        logits[impl] = np.asarray(jax.jit(model.apply, static_argnums=2)(params, tokens, True))
    np.testing.assert_allclose(logits["pallas"], logits["xla"], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("impl,masked,message", [("triton", False, "impl must be one of"),
                                                 ("pallas", True, "contradict each other")])
def test_bad_impl_settings_are_one_sentence(impl, masked, message):
    config = harmonic_configs.get_config("tiny")
    set_value(config, "model.harmonic.impl", impl)
    set_value(config, "model.harmonic.masked", masked)
    with pytest.raises(ConfigError, match=message) as err:
        validate(config)
    assert "\n" not in str(err.value) and str(err.value).endswith(".")


def test_importing_the_models_and_kernels_leaves_the_backend_unstarted():
    """jax.distributed.initialize must run before any backend starts, and multi-host runs import the models first
    (every kernel module, not only this one)."""
    import subprocess

    code = ("import wavejax.models, pallas_kernels.selective_attention, pallas_kernels.interference_attention, "
            "pallas_kernels.kuramoto_attention, pallas_kernels.kuramoto_lattice; from jax._src import xla_bridge; "
            "print(xla_bridge.backends_are_initialized())")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "False"


def test_pallas_preset_validates_and_xla_is_the_default():
    assert harmonic_configs.get_config().model.harmonic.impl == "xla"
    config = harmonic_configs.get_config("tiny+pallas")
    validate(config)
    assert config.model.harmonic.impl == "pallas"


# == 7. GPU lowering without a GPU, and the benchmark script ===========================================================

@pytest.mark.parametrize("t,d,dtype", [(192, 64, jnp.bfloat16), (200, 48, jnp.float32)])
def test_kernels_lower_to_triton_for_cuda(t, d, dtype):
    """The forward, dq and dk/dv kernels pass Pallas' Triton lowering (unsupported ops or shapes fail here), lowered
    for CUDA on this CPU machine: T = 192 is not a power of two, T = 200 is ragged and D = 48 is padded to 64."""
    q = jax.ShapeDtypeStruct((2, t, 4, d), dtype)
    wave = jax.ShapeDtypeStruct((2, t), jnp.bool_)

    def loss(q, k, v, w):
        return selective_attention.wave_selective_flash_attention(q, k, v, w, 128, interpret=False).astype(
            jnp.float32).sum()

    text = lower_for_gpu(jax.grad(loss, argnums=(0, 1, 2)), q, q, q, wave).as_text()
    for name in ("wave_selective_forward", "wave_selective_dq", "wave_selective_dkdv"):
        assert f'name = "{name}"' in text
    assert "__gpu$xla.gpu.triton" in text


@pytest.mark.slow
def test_bench_kernels_prints_the_table_with_consistent_ratios(capsys, tmp_path):
    from experiments.benchmarks import bench_kernels

    rc = bench_kernels.main(["--plot", str(tmp_path / "t.png"), "--kernels", "selective", "--lengths", "40",
                             "--batch", "1", "--heads", "1", "--head_dim", "16", "--window", "4", "--block_q", "16",
                             "--block_k", "16", "--reps", "1", "--warmup", "0"])
    out = capsys.readouterr().out
    assert rc == 0 and (tmp_path / "t.png").stat().st_size > 0
    assert ("interpret mode" in out) == (jax.default_backend() == "cpu")
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in out.splitlines()
            if line.startswith("| selective")]
    by_impl = {r[2]: r for r in rows}
    assert set(by_impl) == {"xla", "pallas", "dense"}
    ref_ms = float(by_impl["xla"][4])
    for r in rows:
        assert float(r[8].rstrip("×")) == pytest.approx(ref_ms / float(r[4]), rel=0.05, abs=0.01)
    assert float(by_impl["pallas"][9]) < 1e-4  # the timed kernel's output equals the xla path's


@pytest.mark.parametrize("argv,message", [(["--block_q", "12"], "power of two"),
                                          (["--kernels", "nope"], "unknown kernel"),
                                          (["--lengths", "64,x"], "comma-separated integers")])
def test_bench_kernels_rejects_bad_arguments(capsys, argv, message):
    from experiments.benchmarks import bench_kernels

    with pytest.raises(SystemExit) as exit_info:
        bench_kernels.main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0]


def test_bench_kernels_splits_reference_pairs_into_two_rows():
    from experiments.benchmarks import bench_kernels

    pair = {"kernel": "k", "shape": "2 x 16²", "ref_ms": 2.0, "kernel_ms": 0.5, "speedup": 4.0, "ref_temp": 10,
            "kernel_temp": 20, "throughput": "1 osc-steps/s", "of_peak": "3% of 4 GB/s copy", "max_abs_diff": 0.0}
    reference, kernel = bench_kernels.table_rows(pair)
    assert (reference["impl"], reference["fwd_ms"], reference["temp_bytes"]) == ("xla", 2.0, 10)
    assert (kernel["impl"], kernel["fwd_ms"], kernel["speedup"]) == ("pallas", 0.5, 4.0)
    assert kernel["peak_pct"] == "3% of 4 GB/s copy"
    table = bench_kernels.render([reference, kernel])
    assert "3% of 4 GB/s copy" in table and "4.00×" in table


def test_bench_kernels_work_only_counts_scores_without_running(capsys):
    from experiments.benchmarks import bench_kernels

    rc = bench_kernels.main(["--work_only", "--lengths", "1024", "--batch", "2", "--window", "32", "--block_q", "32",
                             "--block_k", "32"])
    assert rc == 0
    rows = {r[2]: r for r in ([c.strip() for c in line.strip("|").split("|")]
                              for line in capsys.readouterr().out.splitlines() if line.startswith("| selective"))}
    k = 256  # ceil(0.25 · 1024) per row; xla: k·T gathered + T·2W banded scores
    assert all(len(r) == 4 for r in rows.values())  # kernel, size, impl, scores / causal: no empty timing columns
    assert float(rows["xla"][3]) == pytest.approx((k * 1024 + 1024 * 64) / (1024 * 1025 / 2), abs=1e-3)
    assert 0.25 < float(rows["pallas"][3]) < float(rows["xla"][3])


@on_gpu
@pytest.mark.parametrize("block", [32, 64])
def test_compiled_kernels_match_the_reference_on_a_gpu(block):
    """The Triton kernels themselves (interpret=False), bf16 inputs, ragged T: forward and gradients within 1e-2."""
    b, t, h, d, window = 2, 200, 4, 64, 32
    q, k, v, cot = (jnp.asarray(normal(s, (b, t, h, d)), jnp.bfloat16) for s in range(4))
    is_wave = random_waves(6, b, t, 0.25)
    out, grads = jax.jit(lambda q, k, v, ct: value_and_grads(
        lambda *a: selective_attention.wave_selective_flash_attention(*a, is_wave, window, block_q=block,
                                                                      block_k=block, interpret=False),
        q, k, v, ct))(q, k, v, cot)
    wide = [a.astype(jnp.float32) for a in (q, k, v, cot)]
    with jax.default_matmul_precision("highest"):
        ref_out, ref_grads = value_and_grads(
            lambda *a: wave_selective_attention_reference(*a, jnp.asarray(is_wave), window), *wide)
    assert rel_err(out, ref_out) < 1e-2
    for name, g, rg in zip("qkv", grads, ref_grads):
        assert rel_err(g, rg) < 1e-2, name


def test_triton_deprecation_is_shown_once_per_process():
    """JAX >= 0.11 warns at every Triton lowering that the backend is deprecated; wavejax shows it once, in the open
    (a subprocess without pytest's warning capture lowers two kernels, three times)."""
    script = """
import jax, jax.numpy as jnp
from pallas_kernels import lower_for_gpu, selective_attention
q = jax.ShapeDtypeStruct((1, 64, 2, 16), jnp.float32)
w = jax.ShapeDtypeStruct((1, 64), jnp.bool_)
for block in (32, 64, 32):
    f = lambda q, k, v, w: selective_attention.wave_selective_flash_attention(q, k, v, w, 16, block_q=block,
                                                                               block_k=block, interpret=False).sum()
    lower_for_gpu(f, q, q, q, w)
"""
    import subprocess
    import sys

    from pallas_kernels import TRITON_DEPRECATION

    from conftest import REPO

    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    deprecated = tuple(int(x) for x in jax.__version__.split(".")[:2]) >= (0, 11)
    assert proc.stderr.count(TRITON_DEPRECATION) == (1 if deprecated else 0), proc.stderr
