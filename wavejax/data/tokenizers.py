"""Character and byte-level BPE tokenizers, saved in the run directory as `tokenizer.json`."""

from __future__ import annotations

import json
import os

import numpy as np

from wavejax.data.synthetic import IdTokenizer
from wavejax.errors import DataError

TOKENIZER_FILE = "tokenizer.json"
TOKENIZERS = ("char", "bpe")


class CharTokenizer:
    """One id per character of the corpus, in sorted order (nanoGPT's shakespeare_char)."""

    kind = "char"

    def __init__(self, chars: str):
        self.chars = chars
        self._index = {ch: i for i, ch in enumerate(chars)}

    @classmethod
    def train(cls, text: str) -> CharTokenizer:
        return cls("".join(sorted(set(text))))

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> np.ndarray:
        try:
            return np.fromiter((self._index[ch] for ch in text), dtype=np.int32, count=len(text))
        except KeyError as e:
            raise DataError(f"character {e.args[0]!r} is not in this run's vocabulary; use only characters from the training text.") from None

    def decode(self, ids) -> str:
        return "".join(self.chars[int(i)] for i in ids)

    def to_json(self) -> dict:
        return {"kind": "char", "chars": self.chars}


class BPETokenizer:
    """Byte-level BPE trained locally with HF `tokenizers`; every string round-trips exactly."""

    kind = "bpe"

    def __init__(self, tok):
        self.tok = tok

    @classmethod
    def train(cls, text: str, vocab_size: int) -> BPETokenizer:
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False, special_tokens=[]
        )
        # Train on line chunks: the trainer streams an iterator instead of one huge string.
        lines = text.splitlines(keepends=True)
        chunks = ("".join(lines[i : i + 1000]) for i in range(0, len(lines), 1000))
        tok.train_from_iterator(chunks, trainer=trainer)
        return cls(tok)

    @property
    def vocab_size(self) -> int:
        return self.tok.get_vocab_size()

    def encode(self, text: str) -> np.ndarray:
        return np.asarray(self.tok.encode(text).ids, dtype=np.int32)

    def decode(self, ids) -> str:
        return self.tok.decode([int(i) for i in ids])

    def to_json(self) -> dict:
        return {"kind": "bpe", "tokenizer": json.loads(self.tok.to_str())}


def save_tokenizer(tokenizer, workdir: str) -> None:
    path = os.path.join(workdir, TOKENIZER_FILE)
    with open(path + ".tmp", "w", encoding="utf-8") as f:
        json.dump(tokenizer.to_json(), f, ensure_ascii=False)
    os.replace(path + ".tmp", path)


def load_tokenizer(workdir: str):
    path = os.path.join(workdir, TOKENIZER_FILE)
    if not os.path.isfile(path):
        raise DataError(f"{workdir} has no {TOKENIZER_FILE}; is it a wavejax run directory?")
    try:
        with open(path, encoding="utf-8") as f:
            blob = json.load(f)
        if blob["kind"] == "char":
            return CharTokenizer(str(blob["chars"]))
        if blob["kind"] == "ids":
            return IdTokenizer(int(blob["vocab_size"]))
        from tokenizers import Tokenizer

        return BPETokenizer(Tokenizer.from_str(json.dumps(blob["tokenizer"])))
    except OSError:
        raise
    except Exception as e:  # json's ValueError, a missing key, or the `tokenizers` parser's own exception type
        reason = str(e).splitlines()[0][:100] if str(e).strip() else e.__class__.__name__
        raise DataError(f"{path} is damaged ({reason}); it holds the run's vocabulary: restore it, or start again "
                        "with a new --workdir.") from None


def train_tokenizer(data_config, text: str):
    if data_config.tokenizer == "char":
        return CharTokenizer.train(text)
    return BPETokenizer.train(text, data_config.vocab_size)
