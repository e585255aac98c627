"""PhaseGPT: GPT-2 small with a Kuramoto phase-coupled layer (spec: docs/specs/phasegpt.md).

Default: Phase A (char tinyshakespeare, 12 layers, width 768, 12 heads, context 512, batch 32; the phase
layer replaces attention in 0-indexed block 7, 32 oscillators, K0 = 1; AdamW 3e-4, betas 0.9/0.999, weight
decay 0.1 with the original's name-based mask, warmup 100, cosine with a 0.1 floor), with the sound phase
layer (causal, attractive, cos/sin features). Arguments, combinable with "+" (e.g. `tiny+faithful`):

  faithful         the original's behaviour: non-causal, repulsive, raw angles, detached regulariser
  nophase          the same trunk with standard attention in every block (the like-for-like baseline)
  wt2_baseline     Phase B on WikiText-2 (wikitext-2-raw-v1, char-level), no phase layer
  wt2_kpc_soft     Phase B, phase layer at block 7, K0 = 0.5
  wt2_kpc_mid      Phase B, K0 = 0.75
  wt2_kpc_diverse  Phase B, K0 = 0.75, phase noise 0.03, frequency jitter 0.02, coherence ceiling 0.45 (lambda 0.1)
  osc16, osc32, osc64   16, 32 or 64 oscillators per head (the original's "Goldilocks" sweep)
  k2               coupling K0 = 2 (the original's "K=2 over-synchronises" run)
  tiny             2 layers (phase layer last), width 64, 8 oscillators: trains in well under a minute on a CPU
  pallas           the phase layer's T Kuramoto steps by the fused Pallas kernel (pallas_kernels/kuramoto_attention.py;
                   interpret mode on CPU); the default stays the XLA scan until the kernel is timed on a GPU

The original's run lengths differed between its runs (20 to 164 epochs of an undocumented windowing); here
every preset has a fixed step budget so that runs compare at equal tokens. Phase B's original tokenizer
(ord(c) % 256 over non-whitespace characters) is replaced by the char tokenizer over the raw text.
"""

from wavejax.config import apply_preset, base_config, tiny_overrides
from wavejax.models.phase import default_phase_config

PHASE_LAYER = 7


def layers(n_layer: int, phase_at: int | None) -> tuple:
    return tuple("phase" if i == phase_at else "dense" for i in range(n_layer)) if phase_at is not None else ()


_WT2 = {
    "data.dataset": "wikitext-2-raw-v1",
    "train.batch_size": 8,
    "train.weight_decay": 0.01,
    "train.decay_mask": "all",
    "train.warmup_steps": 500,
    "train.min_lr": 0.0,
    "train.schedule": "cosine",
    "train.steps": 20000,
}

PRESETS = {
    "faithful": {"model.phase.seed_faithful": True},
    "nophase": {"model.layer_attention": ()},
    "wt2_baseline": {**_WT2, "model.layer_attention": ()},
    "wt2_kpc_soft": {**_WT2, "model.phase.coupling_init": 0.5},
    "wt2_kpc_mid": {**_WT2, "model.phase.coupling_init": 0.75},
    "wt2_kpc_diverse": {**_WT2, "model.phase.coupling_init": 0.75, "model.phase.phase_noise": 0.03,
                        "model.phase.freq_jitter": 0.02, "model.phase.reg_lambda": 0.1, "model.phase.reg_mode": "ceiling",
                        "model.phase.reg_target": 0.45},
    "pallas": {"model.phase.impl": "pallas"},
    "osc16": {"model.phase.oscillators": 16},
    "osc32": {"model.phase.oscillators": 32},
    "osc64": {"model.phase.oscillators": 64},
    "k2": {"model.phase.coupling_init": 2.0},
    "tiny": {**tiny_overrides(), "model.layer_attention": layers(2, 1), "model.phase.oscillators": 8,
             "model.dropout": 0.0, "model.attn_dropout": 0.0, "train.lr": 1e-3, "train.min_lr": 1e-4},
}


def get_config(arg=None):
    c = base_config()
    c.model.family = "phase"
    c.model.n_layer, c.model.n_head, c.model.d_model, c.model.block_size = 12, 12, 768, 512
    c.model.dropout = 0.1
    c.model.attn_dropout = 0.1
    c.model.use_bias = True
    c.model.scaled_residual_init = False
    c.model.layer_attention = layers(12, PHASE_LAYER)
    c.model.phase = default_phase_config()
    t = c.train
    t.batch_size, t.steps, t.lr, t.min_lr, t.warmup_steps = 32, 5000, 3e-4, 3e-5, 100
    t.beta1, t.beta2, t.eps, t.weight_decay, t.grad_clip = 0.9, 0.999, 1e-8, 0.1, 1.0
    t.decay_mask, t.schedule = "phasegpt", "cosine_clamp"
    t.eval_every, t.checkpoint_every, t.eval_batches = 500, 500, 100
    return apply_preset(c, arg, PRESETS)
