"""Model families; each plugs its parts into the GPT trunk through `wavejax.nn.registry`."""

from wavejax.models.gpt import GPT, build_model  # noqa: F401
from wavejax.models import phase  # noqa: F401,E402  (registers the "phase" attention)
from wavejax.models import harmonic  # noqa: F401,E402  (registers "wave_detector", "wave_selective", "harmonic_moe")
from wavejax.models import wave  # noqa: F401,E402
