"""Baseline GPT: nanoGPT's shakespeare-char model (6 layers, 6 heads, width 384, block 256).

Residual and embedding dropout 0.2 as nanoGPT; attention-probability dropout is 0 so attention runs
through jax.nn.dot_product_attention (cuDNN on GPU), which has none. --config.model.attn_dropout=0.2
gives nanoGPT's exact regularisation through the einsum path.

Arguments (`--config=configs/baseline.py:ARG`):
  tiny         2 layers, width 64: trains end to end in well under a minute on a 2-core CPU
  nanogpt_cpu  nanoGPT's README CPU settings (4 layers, 4 heads, width 128, block 64, batch 12,
               2000 steps, no dropout, lr decayed over 2000 steps); nanoGPT reports val 1.88
"""

from wavejax.config import apply_preset, base_config, tiny_overrides

PRESETS = {
    "tiny": tiny_overrides(),
    "nanogpt_cpu": {
        "model.n_layer": 4,
        "model.n_head": 4,
        "model.d_model": 128,
        "model.block_size": 64,
        "model.dropout": 0.0,
        "train.batch_size": 12,
        "train.steps": 2000,
        "train.decay_steps": 2000,
        "train.eval_every": 250,
        "train.eval_batches": 200,
    },
}


def get_config(arg=None):
    return apply_preset(base_config(), arg, PRESETS)
