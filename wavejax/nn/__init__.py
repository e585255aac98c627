"""Reusable layers; importing this package registers the standard parts."""

from wavejax.nn import attention, embed, mlp, registry  # noqa: F401
