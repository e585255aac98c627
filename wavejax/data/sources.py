"""Where text comes from: tinyshakespeare shipped inside the package, a local file, or Hugging Face.

tinyshakespeare (Karpathy's char-rnn copy, 1,115,394 characters of public-domain text) is part of the package,
xz-compressed, and checked against its sha256 each time it is read: the main command, every preset and the tests
need no download, cache or environment variable. Other corpora come from `data.path` or the Hugging Face sources
(the optional `hf` extra). Every failure is a DataError that names the way out.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import lzma
import os
import pathlib
from importlib import resources

import ml_collections

from wavejax.data.tokenizers import TOKENIZERS
from wavejax.errors import DataError

TINYSHAKESPEARE_SHA256 = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"
TINYSHAKESPEARE_RESOURCE = "tinyshakespeare.txt.xz"

# config name -> (HF path, HF config, streamed); streamed sources need data.max_chars.
HF_DATASETS = {
    "wikitext-2-raw-v1": ("wikitext", "wikitext-2-raw-v1", False),
    "tinystories": ("roneneldan/TinyStories", None, False),
    "pg19": ("deepmind/pg19", None, True),
    "fineweb-edu": ("HuggingFaceFW/fineweb-edu", "sample-10BT", True),
}

LOCAL_HINT = "pass a local text file with --config.data.dataset=file --config.data.path=PATH"


@dataclasses.dataclass
class Corpus:
    name: str
    train: str
    val: str


@functools.lru_cache(maxsize=1)
def tinyshakespeare() -> str:
    """The shipped corpus, decompressed and verified (about 30 ms)."""
    try:
        blob = lzma.decompress(resources.files("wavejax.data").joinpath(TINYSHAKESPEARE_RESOURCE).read_bytes())
    except (OSError, lzma.LZMAError) as e:
        raise DataError(f"the tinyshakespeare corpus shipped with wavejax cannot be read ({e}); reinstall wavejax, "
                        f"or {LOCAL_HINT}.") from None
    if hashlib.sha256(blob).hexdigest() != TINYSHAKESPEARE_SHA256:
        raise DataError(f"the tinyshakespeare corpus shipped with wavejax does not match its sha256; reinstall "
                        f"wavejax, or {LOCAL_HINT}.")
    return blob.decode("utf-8")


def _read(path: os.PathLike) -> str:
    try:
        return pathlib.Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise DataError(f"{path} is not UTF-8 text; convert it or choose another file.") from None


def split(text: str, val_fraction: float) -> tuple[str, str]:
    n = int(len(text) * (1.0 - val_fraction))
    return text[:n], text[n:]


def _load_hf(name: str, max_chars: int, val_fraction: float) -> tuple[str, str]:
    path, hf_config, streamed = HF_DATASETS[name]
    if streamed and max_chars <= 0:
        raise DataError(f"{name} is streamed; set --config.data.max_chars to the number of characters to use.")
    try:
        import datasets
        import huggingface_hub
    except ImportError:
        raise DataError(f"data.dataset={name!r} needs the Hugging Face datasets library: pip install -e '.[hf]' "
                        f"(or {LOCAL_HINT}).") from None
    try:
        datasets.logging.set_verbosity_error()
        huggingface_hub.utils.logging.set_verbosity_error()  # one sentence below, not a retry log
        ds = datasets.load_dataset(path, hf_config, streaming=streamed)
    except Exception as e:  # datasets raises many types for offline/unreachable hubs
        raise DataError(f"could not load Hugging Face dataset {name!r} ({e.__class__.__name__}: offline and not cached?); {LOCAL_HINT}.") from None

    def take(split_name: str, limit: int) -> str:
        parts, total = [], 0
        for row in ds[split_name]:
            parts.append(row["text"])
            total += len(row["text"]) + 1
            if limit and total >= limit:
                break
        return "\n".join(parts)

    if "validation" in ds:
        val_limit = int(max_chars * val_fraction) if max_chars else 0
        return take("train", max_chars - val_limit if max_chars else 0), take("validation", val_limit)
    return split(take("train", max_chars), val_fraction)


def default_data_config():
    """config.data, the same for every task that reads text (lm, memory)."""
    c = ml_collections.ConfigDict()
    c.dataset = "tinyshakespeare"  # tinyshakespeare | file | a Hugging Face name (see wavejax/data/sources.py)
    c.path = ""  # local text file, used when dataset == "file"
    c.tokenizer = "char"  # char | bpe (byte-level BPE trained on the train split)
    c.vocab_size = 512  # BPE only; the char vocabulary is the set of characters in the corpus
    c.val_fraction = 0.1  # the last 10% of the text is held out, as in nanoGPT
    c.max_chars = 0  # 0 = the whole corpus; >0 truncates (streamed sources need it)

    return c


def check_data_config(d) -> None:
    """The checks every task makes of its `data` section before any work: one DataError sentence each."""
    def need(ok: bool, message: str) -> None:
        if not ok:
            raise DataError(message)

    need(d.tokenizer in TOKENIZERS, f"data.tokenizer must be one of {TOKENIZERS}, got {d.tokenizer!r}.")
    if d.dataset == "synthetic":
        need("synthetic" in d, "data.dataset='synthetic' needs a data.synthetic section; start from configs/synthetic.py.")
    if d.dataset == "file":
        need(bool(d.path), "data.dataset='file' needs --config.data.path=PATH to a text file.")
    if d.path:
        need(not os.path.isdir(d.path), f"data.path {d.path!r} is a folder; pass a text file with --config.data.path.")
        need(os.path.isfile(d.path), f"data file {d.path!r} does not exist; pass an existing text file with --config.data.path.")
    need(0.0 < d.val_fraction < 1.0, f"data.val_fraction must be between 0 and 1, got {d.val_fraction}.")
    need(d.max_chars >= 0, f"data.max_chars must be >= 0 (0 = whole corpus), got {d.max_chars}.")
    if d.tokenizer == "bpe":
        need(d.vocab_size >= 257, f"data.vocab_size must be >= 257 for byte-level BPE, got {d.vocab_size}.")


def load_corpus(data_config) -> Corpus:
    """Returns the train/validation text for the config (90/10 split of single-file sources)."""
    name = data_config.dataset
    max_chars = data_config.max_chars
    if name in HF_DATASETS:
        train, val = _load_hf(name, max_chars, data_config.val_fraction)
        return Corpus(name, train, val)
    if name == "file":
        text = _read(data_config.path)
    elif name == "tinyshakespeare":
        text = _read(data_config.path) if data_config.path else tinyshakespeare()
    else:
        raise DataError(f"data.dataset {name!r} is unknown; choose tinyshakespeare, file, synthetic, or one of {sorted(HF_DATASETS)}.")
    if max_chars:
        text = text[:max_chars]
    train, val = split(text, data_config.val_fraction)
    return Corpus(name, train, val)
