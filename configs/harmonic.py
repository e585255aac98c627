"""Harmonic GPT on char tinyshakespeare: the status report's models (4 layers, width 256, 4 heads, context 256)
(spec: docs/specs/harmonic_gpt.md).

Default: "no MoE" Harmonic GPT, the sound version: wave detector with causal selection of 25% of tokens, wave tokens
attend globally and the others to the last 32 positions, their outputs scaled by the detector score, mode coupling
of every earlier layer, dense FFN. Sized to train start to finish on a 2-core CPU in about ten minutes
(1000 steps of 8×256 tokens); on a GPU raise train.steps and train.batch_size.
Arguments, combinable with "+" (e.g. `tiny+moe`, `f0125+w128`):

  moe              "full MoE": the FFN is the harmonic mixture of 4 experts (wave tokens routed, others to expert 0)
  standard         the report's standard GPT: the same trunk with dense causal attention, dense FFN, no coupling
  faithful         the original's selection: top-k over the whole window, hard mask (no detector gradient)
  report_coupling  the report's sparse mode coupling (layer i feeds i+1 if odd, i+8 if even) instead of all-earlier
  masked           wave-selective attention computed as dense T×T scores with the mask (the reference; slow)
  pallas           wave-selective attention by the Pallas flash kernel (pallas_kernels/selective_attention.py;
                   interpret mode on CPU, slow there; "xla" is the default)
  f0125 f025 f05   wave fraction 0.125 / 0.25 / 0.5
  w32 w128         local window 32 / 128
  cpu              width 128, batch 8 × 256, 400 steps, no dropout: the size of the CPU quality sweep
                   (experiments/reproductions/harmonic_quality.py)
  tiny             2 layers, width 64, context 64, window 8: trains in well under a minute on a CPU
"""

from wavejax.config import apply_preset, base_config, tiny_overrides
from wavejax.models.harmonic import default_harmonic_config

STANDARD = {"model.selector": "none", "model.attention": "dense", "model.mixer": "mlp", "model.layer_coupling": "none"}

PRESETS = {
    "moe": {"model.mixer": "harmonic_moe"},
    "standard": STANDARD,
    "faithful": {"model.harmonic.seed_faithful": True},
    "report_coupling": {"model.layer_coupling": "report"},
    "masked": {"model.harmonic.masked": True},
    "pallas": {"model.harmonic.impl": "pallas"},
    "f0125": {"model.harmonic.fraction": 0.125},
    "f025": {"model.harmonic.fraction": 0.25},
    "f05": {"model.harmonic.fraction": 0.5},
    "w32": {"model.harmonic.window": 32},
    "w128": {"model.harmonic.window": 128},
    "cpu": {"model.d_model": 128, "model.dropout": 0.0, "train.batch_size": 8, "train.steps": 400,
            "train.warmup_steps": 40, "train.eval_every": 100, "train.checkpoint_every": 200, "train.eval_batches": 40},
    "tiny": {**tiny_overrides(), "model.harmonic.window": 8, "model.harmonic.detector_hidden": 32},
}


def get_config(arg=None):
    c = base_config()
    m = c.model
    m.family = "harmonic"
    m.n_layer, m.n_head, m.d_model, m.block_size = 4, 4, 256, 256
    m.dropout = 0.1
    m.use_bias = True  # the report's sizes (3.24M standard) include nanoGPT's biases
    m.selector = "wave_detector"
    m.attention = "wave_selective"
    m.mixer = "mlp"
    m.layer_coupling = "all"
    m.harmonic = default_harmonic_config()
    t = c.train
    t.batch_size, t.steps, t.warmup_steps = 8, 1000, 100
    t.lr, t.min_lr = 1e-3, 1e-4
    t.eval_every, t.eval_batches, t.checkpoint_every = 250, 40, 250
    return apply_preset(c, arg, PRESETS)
