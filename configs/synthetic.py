"""Mechanism benchmarks: synthetic tasks that isolate one ability of a sequence mixer (wavejax/data/synthetic.py),
trained with loss and accuracy on the answer positions only. Default: MQAR with 16 pairs at T = 128 (vocab 64), the
dense GPT (2 attention-only layers, width 64, 2 heads, untied head), 6000 steps of 64 sequences (what it reaches:
docs/RESULTS.md, "Mechanisms"). Arguments, combinable with "+" in any order (e.g. `induction+phase+tiny`):

  tasks     mqar (default), copy (selective copying), induction, binding
  models    dense (default), rope (dense with rotary positions), local (sliding window of 16, no global tokens),
            linear (causal linear attention, elu+1),
            harmonic (wave-selective attention: causal selection of 25% of the tokens, window 16),
            harmonic_faithful (the original's top-k selection over the whole window), phase (every block's attention
            replaced by the causal Kuramoto phase layer), wave (every block's attention is interference attention)
  sizes     tiny (a few steps: tests, CI), cpu (the defaults), gpu (width 128, 4 heads, batch 128); the sweeps of
            experiments/reproductions/mechanisms.py set their own sizes
"""

from wavejax.config import apply_preset, base_config
from wavejax.data.synthetic import default_synthetic_config
from wavejax.models.harmonic import default_harmonic_config
from wavejax.models.phase import default_phase_config
from wavejax.models.wave import default_wave_config

_HARMONIC = {"model.selector": "wave_detector", "model.attention": "wave_selective", "model.harmonic.window": 16}

PRESETS = {
    # tasks
    "mqar": {"data.synthetic.task": "mqar", "data.synthetic.vocab": 64},
    "copy": {"data.synthetic.task": "selective_copy", "data.synthetic.vocab": 16},
    "induction": {"data.synthetic.task": "induction", "data.synthetic.vocab": 128},
    "binding": {"data.synthetic.task": "binding"},
    # models
    "dense": {"model.attention": "dense"},
    "rope": {"model.attention": "rope"},
    "local": {"model.attention": "local"},
    "linear": {"model.attention": "linear"},
    "harmonic": _HARMONIC,
    "harmonic_faithful": {**_HARMONIC, "model.harmonic.seed_faithful": True},
    "phase": {"model.attention": "phase"},
    "wave": {"model.attention": "wave_interference"},
    # sizes
    "tiny": {"train.steps": 6, "train.eval_every": 3, "train.eval_batches": 2, "train.batch_size": 8,
             "train.warmup_steps": 2, "train.log_every": 3, "train.checkpoint_every": 6, "train.progress": False},
    "cpu": {},
    "gpu": {"model.d_model": 128, "model.n_head": 4, "model.init_std": 128 ** -0.5, "train.batch_size": 128},
}


def get_config(arg=None):
    c = base_config()
    c.data.dataset = "synthetic"
    c.data.synthetic = default_synthetic_config()
    m = c.model
    m.n_layer, m.n_head, m.d_model, m.block_size = 2, 2, 64, 128
    m.dropout, m.attn_dropout = 0.0, 0.0
    m.mixer = "none"  # attention-only blocks, as Zoology's MQAR models: the sequence mixer is what is measured
    m.init_std = 0.125  # 1 / sqrt(d_model): with GPT-2's 0.02 at width 64, recall stalls for thousands of steps
    m.head = "linear"  # untied: with the tied head, MQAR at T = 64 stayed on its plateau twice as long and more
    m.local_window = 16
    m.harmonic = default_harmonic_config()
    m.phase = default_phase_config()
    m.phase.oscillators = 16
    m.wave = default_wave_config()
    m.wave.num_waves, m.wave.interference_block = 16, 32
    t = c.train
    t.steps, t.batch_size, t.warmup_steps = 6000, 64, 100
    t.lr, t.min_lr, t.weight_decay = 3e-3, 3e-4, 0.0
    t.eval_every, t.eval_batches, t.log_every, t.checkpoint_every = 250, 8, 50, 1000
    t.sample_tokens = 0  # the tasks have no text to sample
    return apply_preset(c, arg, PRESETS)
