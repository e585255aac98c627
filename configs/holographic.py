"""Holographic SO(4) associative memory (task "memory"; spec: docs/specs/holographic.md): learns a corpus without
gradient descent, saves it, prints the evaluation table (seen / held-out / one-token-changed, with unigram and
n-gram baselines) and samples text.

Default (sound): tinyshakespeare as characters (the char tokenizer of wavejax.data, 90/10 split), context 64,
Haar-random SO(4) embeddings with the original's 2-scale position rotations, 16^6 slots routed by a hash of all 16
quantised coefficients, the transpose-unbind + cosine decoder, and the exact-match episodic cache.
Arguments (`--config=configs/holographic.py:ARG`, combinable with "+", e.g. `tiny+faithful`):

  faithful   the original's behaviour: its numpy seed-42 QR table, level digits (4a+b) mod 16 for routing, and the
             Grace-then-coherence decoder (retrieve_parallel)
  short      context 8 instead of 64 (contexts recur, so slots superpose several targets)
  tiny       the first 20,000 characters, context 8, 16^3 slots, 100 queries, 40 sampled characters per prompt: seconds on a CPU
"""

from wavejax.config import apply_preset, task_config
from wavejax.data.sources import default_data_config
from wavejax.memory.task import default_eval_config, default_memory_config

PRESETS = {
    "faithful": {"memory.embedding": "original", "memory.routing": "digits", "memory.decoder": "coherence"},
    "short": {"memory.context_length": 8},
    "tiny": {"data.max_chars": 20000, "memory.context_length": 8, "memory.levels": 3, "memory.write_batch": 4096,
             "eval.queries": 100, "eval.calibration": 50, "eval.sample_tokens": 40, "eval.ngram_orders": (3,),
             "eval.progress": False},
}


def get_config(arg=None):
    c = task_config("memory")
    c.data, c.memory, c.eval = default_data_config(), default_memory_config(), default_eval_config()
    return apply_preset(c, arg, PRESETS)
