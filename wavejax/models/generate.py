"""Autoregressive sampling with a fixed-size window (static shapes: one compile per length)."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp


@functools.partial(jax.jit, static_argnames=("model", "max_new_tokens", "block_size", "top_k"))
def _generate(model, params, prompt, rng, temperature, *, max_new_tokens: int, block_size: int, top_k: int):
    p = prompt.shape[0]
    length = max(p + max_new_tokens, block_size)
    buf = jnp.zeros((length,), jnp.int32).at[:p].set(prompt)

    def body(i, carry):
        buf, rng = carry
        n = p + i  # tokens so far; predict token n from the window ending at n-1
        start = jnp.clip(n - block_size, 0, length - block_size)
        window = jax.lax.dynamic_slice(buf, (start,), (block_size,))
        logits = model.apply({"params": params}, window[None], True)[0]
        logits = jax.lax.dynamic_index_in_dim(logits, n - 1 - start, keepdims=False) / temperature
        if top_k:
            kth = jax.lax.top_k(logits, top_k)[0][-1]
            logits = jnp.where(logits < kth, -jnp.inf, logits)
        rng, sub = jax.random.split(rng)
        token = jax.random.categorical(sub, logits).astype(jnp.int32)
        return buf.at[n].set(token), rng

    buf, _ = jax.lax.fori_loop(0, max_new_tokens, body, (buf, rng))
    return buf[: p + max_new_tokens]


def generate(model, params, prompt_ids, max_new_tokens: int, rng, block_size: int, temperature: float = 1.0, top_k: int = 0):
    """Returns prompt + max_new_tokens sampled ids (causal attention: right-padding is never seen)."""
    if len(prompt_ids) == 0:
        raise ValueError("the prompt must contain at least one token")
    prompt = jnp.asarray(prompt_ids, jnp.int32)
    return _generate(model, params, prompt, rng, jnp.float32(temperature), max_new_tokens=max_new_tokens,
                     block_size=block_size, top_k=top_k)
