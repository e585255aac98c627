"""Model families; each plugs its parts into the GPT trunk through `wavejax.nn.registry`."""

from wavejax.models.gpt import GPT, build_model  # noqa: F401
from wavejax.models import phase  # noqa: F401,E402  (registers the "phase" attention)
