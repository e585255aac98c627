"""Wave-Native GPT on char tinyshakespeare (spec: docs/specs/wave_native.md).

Default: the published benchmark's wave model ([B], commit 38a89ad), the code behind "wave 0.8877": 8 layers, width
384, 8 heads, 48 waves x 4 harmonics, context 256, batch 32; wave-packet embedding with learned f/a/phi and a
sigmoid-gated lookup table initialised N(0,1), cosine "hybrid" attention, GELU+0.1 sin MLP, collapse head and no
ln_f (15,433,657 parameters at the original's 1024-entry vocabulary); dropout 0.1; RGD (lr 6e-4, strength 0.3,
warmup 500, wd 0.01 on every parameter) + QFE (lambda 0.05); warmup 300 then cosine to 0, clip 1.0; 15,000 steps.
The original's data was byte-level (a BPE tokenizer loaded without its merges): the same characters as here, but
with 1024 output classes instead of the 65 of the char tokenizer. Arguments, combinable with "+":

  classic        the benchmark's baseline: the GPT trunk (learned positions, dense attention with dropout 0.1,
                 GELU MLP, ln_f, untied head without bias), AdamW 3e-4 with wd 0.01 on all parameters, CE, 5,000 steps
  physics        the [K] "physics-first" model: Zipf-mass embedding annealed from the lookup table over 3,000 steps,
                 ln_f + collapse head, WaveNativeOptimizer (c 0.3, gamma 0.1), WaveCoherenceLoss (0.05 each)
  interference   the exact interference attention (§4.2) in every block (blockwise over keys)
  pallas         the interference attention by the Pallas kernel (pallas_kernels/interference_attention.py;
                 interpret mode on CPU, slow there; "xla" is the default),
                 without attention dropout (the kernel has none)
  pure_elu       the pure-wave attention (§4.4), kernel elu+1 (quadratic: kernel(scores) / sqrt(q+1))
  pure_sigmoid   the pure-wave attention, kernel sigmoid
  pure_exp       the pure-wave attention, kernel exp
  linear         the pure-wave attention's O(T) linear mode (e.g. pure_elu+linear); the original never reached it
  adamw          the wave model trained like the classic: AdamW 3e-4, plain cross-entropy (architecture alone)
  faithful       model.wave.seed_faithful=True (see wavejax/models/wave.py)
  cpu            the CPU scale of experiments/reproductions/wave_benchmark.py: 4 layers, width 128, 4 heads, 32 waves, context 128
  tiny           2 layers, width 64, 8 waves x 2 harmonics, context 64: trains in well under a minute on a CPU

Optimizer and objective are chosen like any other: --config.train.optimizer=resonant|wave_native|wave_adamw|adamw,
--config.train.loss=qfe|wave_coherence|ce; their settings are train.wave_optim and train.wave_loss.
"""

import ml_collections

from wavejax.config import apply_preset, base_config, tiny_overrides
from wavejax.models.wave import default_wave_config
from wavejax.models.wave_losses import WAVE_LOSS_DEFAULTS
from wavejax.models.wave_optim import WAVE_OPTIM_DEFAULTS

CLASSIC = {
    "model.embedding": "learned",
    "model.attention": "dense",
    "model.mixer": "mlp",
    "model.head": "linear",
    "model.final_norm": True,
    "train.optimizer": "adamw",
    "train.loss": "ce",
    "train.lr": 3e-4,
    "train.steps": 5000,
}

PHYSICS = {
    "model.embedding": "wave_physics",
    "model.final_norm": True,  # [K] has ln_f and then the collapse head's LN
    "model.wave.simple_embed_std": 0.02,
    "model.wave.standard_ratio_init": 1.0,
    "train.wave_optim.anneal_steps": 3000,
    "train.optimizer": "wave_native",
    "train.loss": "wave_coherence",
    "train.wave_loss.phase_weight": 0.05,  # the [K] scripts set all three weights to qfe_lambda
    "train.wave_loss.energy_weight": 0.05,
    "train.wave_loss.harmonic_weight": 0.05,
}


def _pure(kernel: str) -> dict:
    return {"model.attention": "wave_pure", "model.wave.pure_kernel": kernel}


PRESETS = {
    "classic": CLASSIC,
    "physics": PHYSICS,
    "interference": {"model.attention": "wave_interference"},
    "pallas": {"model.attention": "wave_interference", "model.wave.impl": "pallas",
               "model.attn_dropout": 0.0},
    "pure_elu": _pure("elu_plus_one"),
    "pure_sigmoid": _pure("sigmoid"),
    "pure_exp": _pure("exp"),
    "linear": {"model.wave.pure_mode": "linear"},
    "adamw": {"train.optimizer": "adamw", "train.loss": "ce", "train.lr": 3e-4},
    "faithful": {"model.wave.seed_faithful": True},
    "cpu": {
        "model.n_layer": 4, "model.n_head": 4, "model.d_model": 128, "model.block_size": 128,
        "model.wave.num_waves": 32, "train.batch_size": 16, "train.warmup_steps": 100,
        "train.eval_every": 250, "train.eval_batches": 50, "train.checkpoint_every": 500,
    },
    "tiny": {
        **tiny_overrides(), "model.wave.num_waves": 8, "model.wave.num_harmonics": 2,
        "model.wave.interference_block": 16, "model.wave.linear_chunk": 16, "model.attn_dropout": 0.0,
        "train.lr": 1e-3, "train.min_lr": 1e-4,
    },
}


def get_config(arg=None):
    c = base_config()
    m = c.model
    m.family = "wave"
    m.n_layer, m.n_head, m.d_model, m.block_size, m.mlp_ratio = 8, 8, 384, 256, 4
    m.dropout, m.attn_dropout = 0.1, 0.1
    m.use_bias = True  # every nn.Linear and LayerNorm of the original has a bias
    m.scaled_residual_init = False  # the original inits every Linear N(0, 0.02^2)
    m.embedding, m.attention, m.mixer, m.head = "wave_packet", "wave_cosine", "wave_mlp", "wave_collapse"
    m.final_norm = False  # [B]: the collapse head's LN is the only final norm
    m.wave = default_wave_config()
    m.wave.simple_embed_std = 1.0  # [B] left simple_embed at PyTorch's N(0,1)
    t = c.train
    t.steps, t.batch_size, t.lr, t.min_lr, t.warmup_steps = 15000, 32, 6e-4, 0.0, 300
    t.beta1, t.beta2, t.eps, t.weight_decay, t.decay_mask, t.grad_clip = 0.9, 0.999, 1e-8, 0.01, "all", 1.0
    t.optimizer, t.loss = "resonant", "qfe"
    t.eval_every, t.checkpoint_every, t.eval_batches = 500, 500, 20
    t.wave_optim = ml_collections.ConfigDict(dict(WAVE_OPTIM_DEFAULTS))
    t.wave_optim.update(coherence_weight=0.3, resonance_strength=0.3, resonance_warmup=500)
    t.wave_loss = ml_collections.ConfigDict(dict(WAVE_LOSS_DEFAULTS))
    return apply_preset(c, arg, PRESETS)
