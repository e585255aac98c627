"""Reusable layers; importing this package registers the standard parts."""

from wavejax.nn import attention, baselines, coupling, embed, heads, mlp, registry  # noqa: F401
