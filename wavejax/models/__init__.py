"""Model families; each plugs its parts into the GPT trunk through `wavejax.nn.registry` when imported here."""

from wavejax.models import harmonic, phase, wave, wave_diagnostics, wave_losses, wave_optim  # noqa: F401  (they register)
from wavejax.models.gpt import GPT, build_model  # noqa: F401

FAMILIES = ("gpt", "harmonic", "phase", "wave")  # model.family: the family's report and the run's log line
