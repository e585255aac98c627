"""Model FLOPs per token and peak FLOP/s by device, for tokens/s -> TFLOP/s -> MFU.

Training FLOPs per token (PaLM appendix B; nanoGPT `estimate_mfu`):

    flops_per_token = 6 * N + 12 * L * d * T

- N: parameters that take part in matrix multiplies = all parameters minus lookup-only tables
  (the learned position table `wpe`). The token table counts once: with the tied output head it
  is the d x V unembedding matmul. This is nanoGPT's `get_num_params(non_embedding=True)`.
  LayerNorm scales are counted too (negligible).
- 6 = 2 (multiply-add) x 3 (forward, and backward w.r.t. activations and weights).
- 12 * L * d * T: the attention scores Q K^T and the weighted sum P V (2 matmuls of 2*T*d FLOPs
  per token and layer, times 3 for training), with T the full block size: causal masking is not
  discounted, as in PaLM and nanoGPT (FlashAttention-style counts halve this term).

It is the dense-GPT count for every model family, so MFU compares like for like; physics ops
that are not matmuls (sin/cos, top-k, normalisation) cost time but add no model FLOPs.
"""

from __future__ import annotations

import jax

LOOKUP_ONLY = ("wpe",)  # parameter names used only by a table lookup (no matmul)

# Dense (non-sparse) peak FLOP/s per device by compute dtype. float32 matmuls run on tensor cores
# as TF32 (JAX's default precision on Ampere and later), so their peak is the TF32 one.
# Sources: specs/gpu_notes.md section 7 (NVIDIA datasheets; sparse figures halved).
PEAK_FLOPS = {
    "H100 SXM": {"bfloat16": 989.4e12, "float32": 494.7e12},
    "H100 PCIe": {"bfloat16": 756e12, "float32": 378e12},
    "H200": {"bfloat16": 989e12, "float32": 494.7e12},
    "A100": {"bfloat16": 312e12, "float32": 156e12},
}


def count_params(params) -> int:
    """All parameters; works on arrays and on jax.eval_shape outputs."""
    return int(sum(x.size for x in jax.tree.leaves(params)))


def _path_names(path) -> list[str]:
    names = []
    for k in path:
        for attr in ("key", "name", "idx"):
            if hasattr(k, attr):
                names.append(str(getattr(k, attr)))
                break
    return names


def lookup_only_params(params) -> int:
    """Parameters in lookup-only tables (LOOKUP_ONLY names anywhere in the path)."""
    leaves = jax.tree_util.tree_flatten_with_path(params)[0]
    return sum(int(x.size) for path, x in leaves if any(n in LOOKUP_ONLY for n in _path_names(path)))


def matmul_params(params) -> int:
    """N of the FLOP estimate: all parameters minus lookup-only tables."""
    return count_params(params) - lookup_only_params(params)


def flops_per_token(n_matmul_params: int, n_layer: int, d_model: int, block_size: int) -> int:
    """Training FLOPs per token: 6 N + 12 L d T (see the module docstring)."""
    return 6 * int(n_matmul_params) + 12 * int(n_layer) * int(d_model) * int(block_size)


def model_flops_per_token(model_config, params) -> int:
    """flops_per_token for a model config and its (possibly abstract) parameter tree."""
    return flops_per_token(matmul_params(params), model_config.n_layer, model_config.d_model, model_config.block_size)


def device_family(device_kind: str) -> str | None:
    """Maps jax's device_kind ("NVIDIA H100 80GB HBM3", "NVIDIA H100 PCIe", ...) to a PEAK_FLOPS key."""
    k = device_kind.lower()
    if "h200" in k:  # H200 and GH200 share H100 SXM compute
        return "H200"
    if "h100" in k:
        if "pcie" in k:
            return "H100 PCIe"
        if "nvl" in k:
            return None  # different clocks; pass --peak_tflops
        return "H100 SXM"
    if "a100" in k:
        return "A100"
    return None


def peak_flops(device_kind: str, dtype: str = "bfloat16") -> float | None:
    """Dense peak FLOP/s of one device for a compute dtype, or None when the device is not in the table."""
    family = device_family(device_kind)
    if family is None:
        return None
    return PEAK_FLOPS[family].get(str(dtype))


def mfu(tokens_per_s: float, flops_per_tok: float, peak_flops_total: float | None) -> float | None:
    """Model FLOPs utilisation: achieved model FLOP/s over the peak of all devices used."""
    if not peak_flops_total:
        return None
    return tokens_per_s * flops_per_tok / peak_flops_total
