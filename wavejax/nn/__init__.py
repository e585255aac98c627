"""Reusable layers; importing this package registers the standard parts."""

from wavejax.nn import attention, coupling, embed, heads, mlp, registry  # noqa: F401
