"""PhaseGPT's layer and model (wavejax/models/phase.py, configs/phase.py): causality and the faithful mode's future
leak, parameter counts, the coherence regulariser's gradient, config checks and presets (and seed_faithful against
hand-set flags), training-only noise and jitter, a tiny run logging R, the weight-decay mask and the clamped cosine
schedule."""

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
from phase_support import (
    VOCAB,
    _key,
    apply_layer,
    apply_layer_jit,
    draw_params,
    init_layer,
    layer_config,
    normal,
    phase_configs,
)

from wavejax.analysis.flops import count_params
from wavejax.config import validate
from wavejax.errors import ConfigError
from wavejax.models.gpt import build_model
from wavejax.models.phase import KuramotoAttention, check_phase_config, default_phase_config, resolved
from wavejax.nn.optimizers import decay_mask
from wavejax.ops.phase import (
    coherence_penalty,
    order_parameter_channels,
)
from wavejax.train import optim

from conftest import apply_overrides, assert_one_error_line, run_module

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
    from wavejax.runlog import read_metrics
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
