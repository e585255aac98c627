"""Text sources, tokenizers and the deterministic batch sampler."""

from wavejax.data.pipeline import prepare_lm_data  # noqa: F401
from wavejax.data.sampler import BatchSampler  # noqa: F401
