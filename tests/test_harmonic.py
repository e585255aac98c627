"""Harmonic GPT (wavejax/ops/selective.py, wavejax/models/harmonic.py, configs/harmonic.py; spec: docs/specs/harmonic_gpt.md).

1. the gathered + banded wave-selective attention equals the masked dense reference (ragged tails, W >= T, W = 1,
   fewer selected than capacity), and the banded part alone equals dense causal attention when W >= T;
2. the causal selection depends only on earlier scores (and the top-k selection does not), the tiny model's logits
   are causal, the faithful model's are not;
3. float64 check_grads of the detector-scaled attention output and of the MoE combine; the detector gets a gradient
   (none in the faithful mode);
4. the MoE: a per-token numpy reference with capacity and default-expert fallback, load balance on random input within
   the capacity, the load-balancing loss at its two extremes;
5. parameter counts against the report, config checks, presets, the CLI.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax.core.meta import unbox
from jax.test_util import check_grads

from wavejax.analysis.flops import count_params
from wavejax.config import validate
from wavejax.errors import ConfigError
from wavejax.models.gpt import build_model
from wavejax.models.harmonic import (
    causal_selection,
    detector_gate,
    expert_capacity,
    load_balancing_loss,
    moe_combine,
    resolved,
    route_top1,
    topk_membership,
)
from wavejax.ops.selective import (
    Selection,
    capacity,
    local_attention,
    selection_indices,
    wave_selective_attention,
    wave_selective_attention_reference,
)

from conftest import assert_one_error_line, configs, run_module

harmonic_configs = configs("harmonic")

VOCAB = 65


def normal(seed, shape, dtype=np.float32):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def random_selection(seed, b, t, k, short_rows=()):
    """is_wave with k selected positions per row (k - 2 in the rows listed in short_rows)."""
    rng = np.random.default_rng(seed)
    is_wave = np.zeros((b, t), bool)
    for row in range(b):
        n = k - 2 if row in short_rows else k
        is_wave[row, rng.choice(t, size=max(n, 0), replace=False)] = True
    return is_wave


# == 1. wave-selective attention =======================================================================================

@pytest.mark.parametrize("b,t,h,d,window,fraction", [
    (2, 64, 2, 8, 16, 0.25),   # T a multiple of W
    (2, 37, 3, 4, 5, 0.25),    # ragged tail
    (1, 33, 2, 4, 1, 0.3),     # W = 1: unselected tokens see only themselves
    (2, 16, 1, 4, 32, 0.25),   # W > T: every token sees its whole prefix
    (1, 50, 2, 4, 7, 1.0),     # every token selected
])
def test_gathered_banded_attention_equals_masked_dense_reference(b, t, h, d, window, fraction):
    q, k, v = (normal(s, (b, t, h, d)) for s in range(3))
    kk = capacity(fraction, t)
    is_wave = random_selection(3, b, t, kk, short_rows=(1,) if kk > 2 else ())
    idx, valid = selection_indices(jnp.asarray(is_wave), kk)
    np.testing.assert_array_equal(np.asarray(valid).sum(1), is_wave.sum(1))
    for row in range(b):  # idx lists the selected positions first, in increasing order
        n = is_wave[row].sum()
        np.testing.assert_array_equal(np.asarray(idx)[row, :n], np.flatnonzero(is_wave[row]))
    ref = wave_selective_attention_reference(q, k, v, jnp.asarray(is_wave), window)
    fast = jax.jit(wave_selective_attention, static_argnums=5)(q, k, v, idx, valid, window)
    np.testing.assert_allclose(np.asarray(fast), np.asarray(ref), atol=1e-5)


def test_reference_mask_is_what_the_spec_says():
    """Check the reference itself on one row by hand: a wave query averages all earlier values, a local one the last W."""
    t, window = 8, 3
    q = np.zeros((1, t, 1, 2), np.float32)  # equal scores: attention is the plain mean over the allowed keys
    v = normal(0, (1, t, 1, 2))
    is_wave = np.zeros((1, t), bool)
    is_wave[0, 6] = True
    out = np.asarray(wave_selective_attention_reference(q, q, v, jnp.asarray(is_wave), window))
    np.testing.assert_allclose(out[0, 6, 0], v[0, :7, 0].mean(0), atol=1e-6)  # wave: positions 0..6
    np.testing.assert_allclose(out[0, 5, 0], v[0, 3:6, 0].mean(0), atol=1e-6)  # local: positions 3..5
    np.testing.assert_allclose(out[0, 1, 0], v[0, :2, 0].mean(0), atol=1e-6)  # local near the start: 0..1


@pytest.mark.parametrize("t,window", [(40, 40), (40, 64), (24, 100)])
def test_banded_attention_with_a_full_window_is_dense_causal_attention(t, window):
    q, k, v = (normal(s, (2, t, 2, 8)) for s in range(3))
    dense = jax.nn.dot_product_attention(q, k, v, is_causal=True)
    np.testing.assert_allclose(np.asarray(local_attention(q, k, v, window)), np.asarray(dense), atol=1e-5)


def test_capacity_is_ceil_fraction_t():
    assert [capacity(f, 256) for f in (0.125, 0.25, 0.5, 1.0)] == [32, 64, 128, 256]
    assert capacity(0.25, 37) == 10 and capacity(0.01, 10) == 1


# == 2. causality ======================================================================================================

def test_causal_selection_reads_only_earlier_scores_and_topk_does_not():
    z = normal(5, (4, 48))
    k = capacity(0.25, 48)
    base_c, base_t = np.asarray(causal_selection(jnp.asarray(z), k)), np.asarray(topk_membership(jnp.asarray(z), k))
    assert (base_c.sum(1) <= k).all() and (base_t.sum(1) == k).all()
    leaks = 0
    for i in range(0, 47, 5):
        z2 = z.copy()
        z2[:, i + 1:] = normal(100 + i, z2[:, i + 1:].shape) + 2.0  # raise every later score
        c2 = np.asarray(causal_selection(jnp.asarray(z2), k))
        np.testing.assert_array_equal(c2[:, : i + 1], base_c[:, : i + 1])
        leaks += int((np.asarray(topk_membership(jnp.asarray(z2), k))[:, : i + 1] != base_t[:, : i + 1]).any())
    assert leaks > 0  # the original's top-k: earlier tokens lose their wave status when later scores rise


def _tiny(arg: str):
    config = harmonic_configs.get_config(arg)
    validate(config)
    model = build_model(config.model, VOCAB)
    tokens = np.random.default_rng(6).integers(0, VOCAB, (2, config.model.block_size)).astype(np.int32)
    params = unbox(jax.jit(lambda key: model.init(key, tokens, True))(jax.random.PRNGKey(7))["params"])
    return config, model, params, tokens


@pytest.mark.parametrize("arg,causal", [("tiny", True), ("tiny+moe", True), ("tiny+faithful", False)])
def test_model_logits_causal_unless_faithful(arg, causal):
    config, model, params, tokens = _tiny(arg)
    apply = jax.jit(lambda x: model.apply({"params": params}, x, True))
    base = np.asarray(apply(tokens))
    leaked = False
    for i in (15, 31, 47):
        changed = tokens.copy()
        changed[:, i + 1:] = (changed[:, i + 1:] * 7 + 3) % VOCAB
        out = np.asarray(apply(changed))
        same = np.allclose(out[:, : i + 1], base[:, : i + 1], atol=1e-5)
        if causal:
            assert same, f"position <= {i} changed"
        leaked |= not same
        assert not np.allclose(out[:, i + 1:], base[:, i + 1:], atol=1e-5)
    assert leaked != causal


# == 3. gradients ======================================================================================================

def _gated_attention(q, k, v, z, idx, valid, is_wave, window):
    """The layer's detector-scaled output: wave rows times sigmoid(score), the others unscaled."""
    sel = Selection(z, jax.nn.sigmoid(z), is_wave, idx, valid)
    return wave_selective_attention(q, k, v, idx, valid, window) * detector_gate(sel)[:, :, None, None]


def test_check_grads_detector_scaled_attention_float64():
    with jax.enable_x64(True):
        b, t, h, d, window = 1, 12, 2, 3, 4
        q, k, v = (jnp.asarray(normal(s, (b, t, h, d), np.float64)) for s in range(3))
        z = jnp.asarray(normal(9, (b, t), np.float64))
        kk = capacity(0.25, t)
        is_wave = causal_selection(z, kk)  # fixed: the selection is piecewise constant in z
        idx, valid = selection_indices(is_wave, kk)
        weights = jnp.asarray(normal(10, (b, t, h, d), np.float64))

        def f(q, k, v, z):
            return jnp.sum(weights * _gated_attention(q, k, v, z, idx, valid, is_wave, window))

        check_grads(jax.jit(f), (q, k, v, z), order=1, modes=("fwd", "rev"))
        dz = jax.grad(f, argnums=3)(q, k, v, z)
        assert np.all(np.asarray(dz)[np.asarray(is_wave)] != 0) and np.all(np.asarray(dz)[~np.asarray(is_wave)] == 0)


def test_check_grads_moe_combine_float64():
    with jax.enable_x64(True):
        b, t, d, f, e, kk = 2, 10, 4, 6, 3, 5
        x = jnp.asarray(normal(0, (b, t, d), np.float64))
        is_wave = random_selection(1, b, t, kk, short_rows=(1,))
        idx, valid = selection_indices(jnp.asarray(is_wave), kk)
        logits = jnp.asarray(normal(2, (b, kk, e), np.float64))  # no near-ties: the routing stays put under eps
        w_up, w_down = jnp.asarray(0.5 * normal(3, (e, d, f), np.float64)), jnp.asarray(0.5 * normal(4, (e, f, d), np.float64))
        b_up, b_down = jnp.asarray(0.1 * normal(5, (e, f), np.float64)), jnp.asarray(0.1 * normal(6, (e, d), np.float64))
        weights = jnp.asarray(normal(7, (b, t, d), np.float64))

        def g(x, logits, w_up, b_up, w_down, b_down):
            y, aux, _, _ = moe_combine(x, idx, valid, logits, w_up, b_up, w_down, b_down, 2)
            return jnp.sum(weights * y) + aux

        check_grads(jax.jit(g), (x, logits, w_up, b_up, w_down, b_down), order=1, modes=("fwd", "rev"))


@pytest.mark.parametrize("arg,detector_learns", [("tiny", True), ("tiny+faithful", False)])
def test_detector_gets_a_gradient_unless_faithful(arg, detector_learns):
    from wavejax.train.step import make_loss_fn

    config, model, params, tokens = _tiny(arg)
    targets = np.roll(tokens, -1, axis=1)
    grads = jax.jit(jax.grad(lambda p: make_loss_fn(model)(p, tokens, targets, jax.random.PRNGKey(0))[0]))(params)
    norm = float(sum(jnp.sum(g ** 2) for g in jax.tree.leaves(grads["seg0_0"]["selector"])))
    assert (norm > 0) == detector_learns, norm


# == 4. the mixture of experts =========================================================================================

def _moe_numpy(x, idx, valid, logits, w_up, b_up, w_down, b_down, cap):
    """Per token, in position order: default expert 0 everywhere; wave tokens to their argmax expert while it has room."""
    from scipy.special import erf

    gelu = lambda a: 0.5 * a * (1 + erf(a / np.sqrt(2)))  # noqa: E731
    ffn = lambda a, e: gelu(a @ w_up[e] + b_up[e]) @ w_down[e] + b_down[e]  # noqa: E731
    y = np.stack([ffn(x[row], 0) for row in range(x.shape[0])])
    for row in range(x.shape[0]):
        used = np.zeros(w_up.shape[0], int)
        for j in range(idx.shape[1]):
            if not valid[row, j]:
                continue
            p = np.exp(logits[row, j] - logits[row, j].max())
            p /= p.sum()
            e = int(np.argmax(p))
            if used[e] < cap:
                used[e] += 1
                y[row, idx[row, j]] = p[e] * ffn(x[row, idx[row, j]], e)
    return y


def test_moe_combine_equals_a_per_token_reference():
    b, t, d, f, e, kk, cap = 3, 20, 4, 8, 3, 7, 2  # capacity 2 < 7/3: some tokens overflow to the default expert
    x = normal(0, (b, t, d))
    is_wave = random_selection(1, b, t, kk, short_rows=(2,))
    idx, valid = selection_indices(jnp.asarray(is_wave), kk)
    logits = normal(2, (b, kk, e))
    w_up, w_down, b_up, b_down = normal(3, (e, d, f)), normal(4, (e, f, d)), normal(5, (e, f)), normal(6, (e, d))
    y, _, _, keep = jax.jit(moe_combine, static_argnums=8)(x, idx, valid, logits, w_up, b_up, w_down, b_down, cap)
    expected = _moe_numpy(x, np.asarray(idx), np.asarray(valid), logits, w_up, b_up, w_down, b_down, cap)
    np.testing.assert_allclose(np.asarray(y), expected, rtol=1e-4, atol=1e-4)
    assert 0 < int(np.asarray(keep).sum()) < int(np.asarray(valid).sum())  # the test really exercises overflow


def test_experts_are_load_balanced_on_random_input_within_capacity():
    """The tiny MoE layer at init on random input: every expert gets 25% ± 7% of the wave tokens, none takes more than its
    capacity in any sequence, few tokens overflow, and the balancing loss is near its minimum of 1."""
    config = harmonic_configs.get_config("tiny+moe")
    h = resolved(config.model.harmonic)
    b, t, d, e = 64, 64, config.model.d_model, h["n_experts"]
    kk = capacity(h["fraction"], t)
    cap = expert_capacity(h, kk)
    x = normal(0, (b, kk, d))
    router = normal(1, (d, e)) * 0.02  # the router's init (normal, std 0.02)
    logits = jnp.asarray(x @ router)
    valid = jnp.ones((b, kk), bool)
    choice, _, keep, _, probs = route_top1(logits, valid, e, cap)
    load = np.bincount(np.asarray(choice).ravel(), minlength=e) / choice.size
    assert np.all(np.abs(load - 1 / e) < 0.07), load
    kept = np.stack([np.bincount(np.asarray(choice)[i][np.asarray(keep)[i]], minlength=e) for i in range(b)])
    assert kept.max() <= cap
    assert 1 - float(np.asarray(keep).mean()) < 0.10
    aux, _ = load_balancing_loss(probs, choice, valid, e)
    assert 1.0 <= float(aux) < 1.05


def test_load_balancing_loss_extremes():
    e = 4
    valid = jnp.ones((1, 8), bool)
    uniform = jnp.zeros((1, 8, e))
    choice = jnp.arange(8)[None] % e
    assert float(load_balancing_loss(jax.nn.softmax(uniform), choice, valid, e)[0]) == pytest.approx(1.0)
    collapsed = jnp.zeros((1, 8, e)).at[..., 2].set(50.0)
    assert float(load_balancing_loss(jax.nn.softmax(collapsed), jnp.full((1, 8), 2), valid, e)[0]) == pytest.approx(e)


def test_collapsed_router_keeps_capacity_tokens_and_the_rest_use_the_default_expert():
    valid = jnp.ones((2, 10), bool)
    logits = jnp.zeros((2, 10, 4)).at[..., 1].set(5.0)
    choice, _, keep, slot, _ = route_top1(logits, valid, 4, 3)
    np.testing.assert_array_equal(np.asarray(keep), np.arange(10)[None].repeat(2, 0) < 3)  # first come, first served
    np.testing.assert_array_equal(np.asarray(slot)[0], [3, 4, 5] + [12] * 7)


# == 5. sizes, configs, CLI ============================================================================================

@pytest.mark.parametrize("arg,expected,report", [("standard", 3_241_728, 3.2), (None, 3_571_210, 3.6), ("moe", 9_882_122, 10.0)])
def test_parameter_counts_match_the_report(arg, expected, report):
    config = harmonic_configs.get_config(arg)
    model = build_model(config.model, VOCAB)
    shapes = unbox(jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), jnp.zeros((1, 256), jnp.int32), True))["params"])
    n = count_params(shapes)
    assert n == expected
    assert abs(n / 1e6 - report) <= 0.15  # the report rounds to 0.1M; its MoE model had one more coupling projection


@pytest.mark.parametrize("key,value,message", [
    ("model.harmonic.fraction", 0.0, "fraction must be in"),
    ("model.harmonic.fraction", 1.5, "fraction must be in"),
    ("model.harmonic.window", 0, "window must be >= 1"),
    ("model.harmonic.selection", "soft", "selection must be one of"),
    ("model.harmonic.impl", "flash", "model.harmonic.impl must be one of"),
    ("model.harmonic.calibration_weight", 0.5, "seed_faithful=True runs the original's calibration_weight=0.0"),
    ("model.harmonic.gate", False, None),  # the faithful value itself: accepted
    ("model.harmonic.capacity_factor", 0.0, "capacity_factor must be > 0"),
    ("model.attn_dropout", 0.1, "no attention-probability dropout"),
    ("model.selector", "none", "needs a token selector"),
])
def test_bad_harmonic_settings_are_one_sentence(key, value, message):
    from wavejax.config import set_value

    config = harmonic_configs.get_config("tiny+faithful" if "faithful" in str(message) or message is None else "tiny")
    set_value(config, key, value)
    if message is None:
        validate(config)
        return
    with pytest.raises(ConfigError, match=message) as err:
        validate(config)
    assert "\n" not in str(err.value) and str(err.value).endswith(".")


@pytest.mark.parametrize("arg", ["moe", "standard", "faithful", "report_coupling", "masked", "tiny+f0125+w128",
                                 "tiny+moe+f05+w32"])
def test_presets_validate(arg):
    validate(harmonic_configs.get_config(arg))


def test_faithful_resolution_overrides_flags():
    config = harmonic_configs.get_config("faithful")
    config.model.harmonic.gate = True
    h = resolved(config.model.harmonic)
    assert (h["selection"], h["gate"], h["calibration_weight"]) == ("topk", False, 0.0)


def test_masked_and_gathered_models_agree():
    config, model, params, tokens = _tiny("tiny+moe")
    masked = build_model(harmonic_configs.get_config("tiny+moe+masked").model, VOCAB)
    a = jax.jit(lambda x: model.apply({"params": params}, x, True))(tokens)
    b = jax.jit(lambda x: masked.apply({"params": params}, x, True))(tokens)
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-4)


@pytest.mark.slow  # a 30-step CLI run of the tiny MoE model (~15 s)
def test_cli_tiny_moe_run_logs_selection_and_routing(tmp_path):
    from wavejax.runlog import read_metrics

    workdir = tmp_path / "run"
    proc = run_module("wavejax.main", "--config=configs/harmonic.py:tiny+moe", f"--workdir={workdir}",
                      "--config.train.steps=30", "--config.train.eval_every=30", "--config.train.eval_batches=2",
                      "--config.train.sample_tokens=16", "--config.train.progress=False")
    assert proc.returncode == 0, proc.stderr
    records = read_metrics(str(workdir))
    train = [r for r in records if r["split"] == "train"]
    last = train[-1]
    assert last["loss"] < math.log(VOCAB) - 0.5
    assert 0 < last["seg0_0/selector/wave_fraction"] <= 0.25 + 1e-6
    loads = [last[f"seg0_1/mixer/expert_load/{e}"] for e in range(4)]
    assert abs(sum(loads) - 1.0) < 1e-4
    assert last["aux_loss"] > 0  # calibration + load balancing
    assert (workdir / "samples.txt").read_text().strip()


def test_cli_bad_harmonic_setting_exits_2_with_one_line(tmp_path):
    proc = run_module("wavejax.main", "--config=configs/harmonic.py:tiny", f"--workdir={tmp_path / 'run'}",
                      "--config.model.harmonic.window=0")
    assert "window must be >= 1" in assert_one_error_line(proc, 2)
    assert not (tmp_path / "run").exists()
