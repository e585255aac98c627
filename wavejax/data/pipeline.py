"""Text -> tokenizer -> token arrays for a language-model run."""

from __future__ import annotations

import dataclasses

import numpy as np

from wavejax.data import sources, tokenizers
from wavejax.data.sampler import BatchSampler
from wavejax.data.synthetic import prepare_synthetic_data
from wavejax.errors import DataError


@dataclasses.dataclass
class LMData:
    tokenizer: object
    train: np.ndarray
    val: np.ndarray
    name: str

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.vocab_size

    def describe(self) -> str:
        return f"{len(self.train):,} train / {len(self.val):,} val tokens"

    def sampler(self, batch_size: int, block_size: int, seed: int, process_index: int, process_count: int,
                split: str) -> BatchSampler:
        tokens = self.train if split == "train" else self.val
        return BatchSampler(tokens, batch_size, block_size, seed, process_index=process_index,
                            process_count=process_count, split=split)


def prepare_lm_data(config, tokenizer=None):
    """The run's data: a synthetic task (data.dataset = "synthetic", wavejax.data.synthetic), or the corpus tokenized
    with `tokenizer` (a resumed run's) or a new one trained on it (char: the whole text, as nanoGPT; BPE: the train
    split only). Writes nothing."""
    if config.data.dataset == "synthetic":
        return prepare_synthetic_data(config)
    corpus = sources.load_corpus(config.data)
    tok = tokenizer
    if tok is None:
        text = corpus.train + corpus.val if config.data.tokenizer == "char" else corpus.train
        tok = tokenizers.train_tokenizer(config.data, text)
    if tok.kind != config.data.tokenizer:
        raise DataError(f"the run's saved tokenizer is {tok.kind} but the config asks for {config.data.tokenizer}; use a new --workdir.")
    train, val = tok.encode(corpus.train), tok.encode(corpus.val)
    need = config.model.block_size + 2
    for split, ids in (("train", train), ("val", val)):
        if len(ids) < need:
            raise DataError(
                f"the {split} split of {corpus.name} has {len(ids)} tokens, fewer than model.block_size + 2 = {need}; "
                "use a larger corpus or a smaller --config.model.block_size."
            )
    store = np.uint16 if tok.vocab_size < 65536 else np.int32  # halves host memory for large corpora
    return LMData(tok, train.astype(store), val.astype(store), corpus.name)
