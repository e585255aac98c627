"""The Kuramoto phase layer: mean-field equals the pairwise reference, gradients, causality, size, regulariser."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from jax.test_util import check_grads

import phase as phase_config_file
from wavejax.config import validate
from wavejax.errors import ConfigError
from wavejax.models.gpt import build_model, count_params
from wavejax.models.phase import (
    KuramotoAttention,
    check_phase_config,
    default_phase_config,
    kuramoto_coupling,
    kuramoto_coupling_reference,
    kuramoto_dynamics,
    order_parameter_interpret,
    order_parameter_tokens,
    resolved,
)


def _layer_config(d_model=32, n_head=2, **phase):
    c = ml_collections.ConfigDict({"d_model": d_model, "n_head": n_head, "n_layer": 2, "dropout": 0.0, "dtype": "float32"})
    c.phase = default_phase_config()
    c.phase.update(phase)
    return c


@pytest.mark.parametrize("causal,norm", [(False, "count"), (True, "count"), (True, "length")])
@pytest.mark.parametrize("shape", [(1, 1, 1, 3), (2, 3, 7, 5), (2, 2, 64, 4)])
def test_mean_field_equals_pairwise_reference(shape, causal, norm):
    theta = jax.random.uniform(jax.random.PRNGKey(0), shape, minval=-np.pi, maxval=np.pi)
    fast = kuramoto_coupling(theta, causal, norm)
    slow = kuramoto_coupling_reference(theta, causal, norm)
    np.testing.assert_allclose(fast, slow, atol=1e-5)


@pytest.mark.parametrize("causal", [False, True])
def test_dynamics_with_either_coupling_agree(causal):
    k0, k1 = jax.random.split(jax.random.PRNGKey(1))
    theta0 = np.pi * jnp.tanh(0.55 * jax.random.normal(k0, (2, 3, 16, 4)))
    omega = 0.1 * jax.random.normal(k1, (3, 1, 4))
    kw = dict(steps=10, dt=0.1, sign=-1.0, causal=causal)
    fast = kuramoto_dynamics(theta0, omega, jnp.full((3,), 1.0), **kw)
    slow = kuramoto_dynamics(theta0, omega, jnp.full((3,), 1.0), coupling_fn=kuramoto_coupling_reference, **kw)
    np.testing.assert_allclose(jnp.exp(1j * fast), jnp.exp(1j * slow), atol=1e-5)  # compare angles modulo 2 pi


def test_gradients_through_the_scanned_dynamics():
    """Order-1 check_grads in float64 w.r.t. theta0, omega and K. Angles stay well inside (-pi, pi) so the
    wrap never jumps (asserted), and the checked function is smooth."""
    with jax.enable_x64(True):
        k0, k1 = jax.random.split(jax.random.PRNGKey(2))
        theta0 = 1.5 * jnp.tanh(jax.random.normal(k0, (1, 2, 6, 3), jnp.float64))
        omega = 0.1 * jax.random.normal(k1, (2, 1, 3), jnp.float64)
        k = jnp.array([0.7, -0.4], jnp.float64)

        def f(theta0, omega, k):
            theta = kuramoto_dynamics(theta0, omega, k, steps=5, dt=0.1, sign=-1.0, causal=True, remat=True)
            return jnp.sum(jnp.sin(theta) * jnp.linspace(0.5, 1.5, theta.size).reshape(theta.shape))

        final = kuramoto_dynamics(theta0, omega, k, steps=5, dt=0.1, sign=-1.0, causal=True)
        assert float(jnp.max(jnp.abs(final))) < 3.0  # no angle reaches the wrap at +-pi
        check_grads(jax.jit(f), (theta0, omega, k), order=1, modes=("fwd", "rev"))


def _apply(layer, params, x, **kw):
    return layer.apply({"params": params}, x, True, **kw)


@pytest.mark.parametrize("faithful", [False, True])
def test_causal_layer_ignores_the_future_and_the_faithful_one_does_not(faithful):
    layer = KuramotoAttention(_layer_config(seed_faithful=faithful, oscillators=4))
    x = jax.random.normal(jax.random.PRNGKey(3), (2, 12, 32))
    params = layer.init(jax.random.PRNGKey(4), x, True)["params"]
    i = 5
    x2 = x.at[:, i + 1 :].set(jax.random.normal(jax.random.PRNGKey(5), (2, 12 - i - 1, 32)))
    y, y2 = _apply(layer, params, x), _apply(layer, params, x2)
    same = np.allclose(y[:, : i + 1], y2[:, : i + 1], atol=1e-6)
    assert same != faithful  # causal: earlier outputs unchanged; the original's layer leaks the future


def test_phase_model_logits_are_causal():
    config = phase_config_file.get_config("tiny")
    model = build_model(config.model, 65)
    tokens = jax.random.randint(jax.random.PRNGKey(6), (1, 64), 0, 65)
    params = jax.jit(lambda key: model.init(key, tokens, True))(jax.random.PRNGKey(7))["params"]
    changed = tokens.at[0, 40:].set((tokens[0, 40:] + 1) % 65)
    a, b = model.apply({"params": params}, tokens, True), model.apply({"params": params}, changed, True)
    np.testing.assert_allclose(a[0, :40], b[0, :40], atol=1e-5)
    assert not np.allclose(a[0, 40:], b[0, 40:], atol=1e-5)


@pytest.mark.parametrize("features,expected", [("angle", 591_372), ("cossin", 768 * 384 + 384 + 12 * 32 + 12 + 2 * 384 * 768 + 768)])
def test_parameter_count_at_phase_a_size(features, expected):
    layer = KuramotoAttention(_layer_config(d_model=768, n_head=12, oscillators=32, output_features=features))
    shapes = jax.eval_shape(lambda key: layer.init(key, jnp.zeros((1, 4, 768)), True), jax.random.PRNGKey(0))["params"]
    assert count_params(shapes) == expected


def _regulariser_grad(**phase):
    layer = KuramotoAttention(_layer_config(oscillators=4, reg_lambda=1.0, reg_mode="center", reg_target=0.0, **phase))
    x = jax.random.normal(jax.random.PRNGKey(8), (2, 8, 32))
    params = layer.init(jax.random.PRNGKey(9), x, True)["params"]

    def penalty(p):
        _, v = layer.apply({"params": p}, x, True, mutable=["losses"])
        return sum(jnp.sum(t) for t in jax.tree.leaves(v["losses"]))

    value, grads = jax.value_and_grad(penalty)(params)
    assert float(value) > 0
    return grads["to_phase"]["kernel"]


def test_regulariser_gradient_reaches_the_phase_projection():
    assert float(jnp.abs(_regulariser_grad()).max()) > 1e-6


def test_faithful_regulariser_is_detached_as_in_the_original():
    assert float(jnp.abs(_regulariser_grad(seed_faithful=True)).max()) == 0.0


def test_signs_move_coherence_the_way_the_spec_measured():
    k0, k1 = jax.random.split(jax.random.PRNGKey(10))
    theta0 = np.pi * jnp.tanh(0.55 * jax.random.normal(k0, (2, 12, 256, 32)))
    omega = 0.1 * jax.random.normal(k1, (12, 1, 32))
    r0 = float(order_parameter_tokens(theta0).mean())
    run = lambda sign: float(order_parameter_tokens(  # noqa: E731
        kuramoto_dynamics(theta0, omega, jnp.ones(12), steps=10, dt=0.1, sign=sign, causal=False)).mean())
    assert abs(r0 - 0.305) < 0.02
    assert abs(run(1.0) - 0.172) < 0.02  # the original's repulsive sign lowers coherence at K = +1
    assert run(-1.0) > r0 + 0.1  # the textbook sign raises it


def test_interpretability_r_of_pure_noise_is_near_the_reported_value():
    theta = jax.random.uniform(jax.random.PRNGKey(11), (12, 512, 32), minval=-np.pi, maxval=np.pi)
    assert abs(float(order_parameter_interpret(theta).mean()) - 0.876) < 0.02
    assert float(order_parameter_tokens(theta[None]).mean()) < 0.1


def test_seed_faithful_overrides_the_fixes():
    config = default_phase_config()
    config.seed_faithful = True
    p = resolved(config)
    assert (p["causal"], p["sign"], p["output_features"], p["reg_grad"]) == (False, "repulsive", "angle", False)


@pytest.mark.parametrize("key,value", [("sign", "up"), ("oscillators", 0), ("phase_noise", -0.1), ("reg_mode", "x")])
def test_bad_phase_settings_are_one_sentence(key, value):
    c = _layer_config()
    c.phase[key] = value
    with pytest.raises(ConfigError, match=rf"model\.phase\.{key} must"):
        check_phase_config(c)


@pytest.mark.parametrize("arg", [None, "tiny", "tiny+faithful", "tiny+nophase", "wt2_baseline", "wt2_kpc_soft",
                                 "wt2_kpc_mid", "wt2_kpc_diverse"])
def test_every_phase_preset_validates(arg):
    config = validate(phase_config_file.get_config(arg))
    layers = tuple(config.model.layer_attention)
    assert ("phase" in layers) == (arg not in ("tiny+nophase", "wt2_baseline"))


@pytest.mark.slow
def test_tiny_phase_run_logs_order_parameters(tmp_path):
    """configs/phase.py:tiny with noise, jitter and the regulariser on trains and logs R for its phase layer."""
    from conftest import apply_overrides

    from wavejax.train.logging import read_metrics
    from wavejax.train.loop import Trainer

    config = apply_overrides(phase_config_file.get_config("tiny"), {
        "train.steps": 6, "train.eval_every": 3, "train.eval_batches": 2, "train.sample_tokens": 0, "train.progress": False,
        "train.log_every": 3, "model.phase.phase_noise": 0.03, "model.phase.freq_jitter": 0.02,
        "model.phase.reg_lambda": 0.1, "model.phase.reg_mode": "center",
    })
    trainer = Trainer(config, str(tmp_path / "run"))
    try:
        summary = trainer.run()
    finally:
        trainer.ckpt.close()
    assert np.isfinite(summary["val_loss"])
    records = read_metrics(str(tmp_path / "run"))
    for split in ("train", "val"):
        last = [r for r in records if r["split"] == split][-1]
        for name in ("R_tokens", "R_channels", "R_layer"):
            key = f"seg1_0/attn/{name}"
            assert 0.0 <= last[key] <= 1.0, (split, key)
            assert 0.0 <= last[f"{key}/1"] <= 1.0  # per head
    train = [r for r in records if r["split"] == "train"]
    assert all(r["aux_loss"] > 0 for r in train)  # the coherence penalty is in the loss


def test_phasegpt_decay_mask_and_clamped_cosine():
    from wavejax.train.optim import decay_mask, schedule

    config = phase_config_file.get_config("tiny")
    model = build_model(config.model, 65)
    shapes = jax.eval_shape(lambda key: model.init(key, jnp.zeros((1, 8), jnp.int32), True), jax.random.PRNGKey(0))["params"]
    mask = decay_mask(shapes, "phasegpt")
    phase_layer = mask["seg1_0"]["attn"]
    assert phase_layer["omega"] and phase_layer["coupling"] and phase_layer["to_phase"]["kernel"]
    assert not phase_layer["to_phase"]["bias"] and not mask["embed"]["wte"]["embedding"]
    assert mask["ln_f"]["scale"]  # the original decays LayerNorm gains (their names lack 'norm')

    t = phase_config_file.get_config(None).train  # lr 3e-4, floor 3e-5, warmup 100, 5000 steps
    lr = schedule(t)
    assert float(lr(50)) == pytest.approx(3e-4 * 50 / 100)
    p = (2000 - 100) / (5000 - 100)
    assert float(lr(2000)) == pytest.approx(3e-4 * 0.5 * (1 + np.cos(np.pi * p)), rel=1e-5)
    assert float(lr(4900)) == pytest.approx(3e-5, rel=1e-5)  # clamped at the floor before the end
