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

from ml_collections import ConfigDict

from wavejax.config import apply_preset, task_config
from wavejax.memory.clifford import PHI

PRESETS = {
    "faithful": {"memory.embedding": "original", "memory.routing": "digits", "memory.decoder": "coherence"},
    "short": {"memory.context_length": 8},
    "tiny": {"data.max_chars": 20000, "memory.context_length": 8, "memory.levels": 3, "memory.write_batch": 4096,
             "eval.queries": 100, "eval.calibration": 50, "eval.sample_tokens": 40, "eval.ngram_orders": (3,),
             "eval.progress": False},
}


def get_config(arg=None):
    c = task_config("memory")

    c.data = ConfigDict()
    c.data.dataset = "tinyshakespeare"  # tinyshakespeare | file | a Hugging Face name (wavejax/data/sources.py)
    c.data.path = ""
    c.data.tokenizer = "char"  # char | bpe
    c.data.vocab_size = 512  # BPE only
    c.data.val_fraction = 0.1  # the last 10% is held out
    c.data.max_chars = 0  # 0 = the whole corpus

    c.memory = ConfigDict()
    c.memory.context_length = 64  # tokens per context (the original's production value, in words)
    c.memory.levels = 6  # 16^levels slots (6: 16.8M slots, 1.07 GB of float32 on the device; saved sparsely)
    c.memory.routing = "hash"  # hash (uniform over all 16 keys) | digits (the original's)
    c.memory.embedding = "haar"  # haar | qr_faithful | original | ppmi | ppmi_faithful
    c.memory.decoder = "cosine"  # used for sampling and the cache fallback: cosine | vorticity | coherence
    c.memory.position_scales = 2  # the original's fractal position rotations (0 = none)
    c.memory.key_power = 3  # keys: trunc(c_k s_k^n / res)
    c.memory.key_resolution = PHI**-12
    c.memory.learning_rate = 1 / PHI  # the binding weight
    c.memory.episodic = True  # the exact-match cache (sampling and the "+ episodic cache" row)
    c.memory.shard_writes = True  # split each chunk's writes over the local devices (the memory is replicated)
    c.memory.write_batch = 65536  # windows per compiled write (rounded to a multiple of the context length)

    c.eval = ConfigDict()
    c.eval.queries = 5000  # scored queries per condition
    c.eval.calibration = 1000  # further queries per condition that fit the softmax temperature
    c.eval.top_k = 5
    c.eval.decoders = ("cosine", "vorticity", "coherence")
    c.eval.ngram_orders = (3, 5, 7)
    c.eval.sample_tokens = 300
    c.eval.sample_prompt = ""  # "": one prompt of training text and one of held-out text, each L tokens
    c.eval.temperature = 1.0  # 0 = the top score
    c.eval.progress = True
    return apply_preset(c, arg, PRESETS)
