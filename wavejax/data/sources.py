"""Where text comes from: a local file, tinyshakespeare (cache, then download), or Hugging Face.

tinyshakespeare is looked up in $WAVEJAX_DATA_DIR, then the user cache
(~/.cache/wavejax or $XDG_CACHE_HOME/wavejax), then downloaded and verified by sha256.
Every failure is a DataError that names the way out (a local path).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import pathlib
import urllib.request

from wavejax.errors import DataError

TINYSHAKESPEARE_URL = "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"
TINYSHAKESPEARE_SHA256 = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"
TINYSHAKESPEARE_FILE = "tinyshakespeare.txt"

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


def cache_dir() -> pathlib.Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return pathlib.Path(base) / "wavejax"


def sha256_of(path: os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _download(url: str, dest: pathlib.Path, sha256: str) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_suffix(dest.suffix + ".part")
    try:
        with urllib.request.urlopen(url, timeout=30) as r, open(tmp, "wb") as f:
            f.write(r.read())
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise DataError(
            f"tinyshakespeare is not in $WAVEJAX_DATA_DIR or {dest.parent} and could not be downloaded ({e.__class__.__name__}); "
            f"set WAVEJAX_DATA_DIR to a folder holding {TINYSHAKESPEARE_FILE}, or {LOCAL_HINT}."
        ) from None
    if sha256_of(tmp) != sha256:
        tmp.unlink(missing_ok=True)
        raise DataError(f"the file downloaded from {url} does not match its sha256; {LOCAL_HINT}.")
    tmp.replace(dest)  # only a verified file ever appears under its final name


def tinyshakespeare_path() -> pathlib.Path:
    candidates = []
    if os.environ.get("WAVEJAX_DATA_DIR"):
        d = pathlib.Path(os.environ["WAVEJAX_DATA_DIR"])
        candidates += [d / TINYSHAKESPEARE_FILE, d / "tinyshakespeare" / "input.txt"]
    cached = cache_dir() / TINYSHAKESPEARE_FILE
    candidates.append(cached)
    for path in candidates:
        if path.is_file():
            if sha256_of(path) != TINYSHAKESPEARE_SHA256:
                raise DataError(f"{path} is not the tinyshakespeare corpus (sha256 mismatch); remove it or {LOCAL_HINT}.")
            return path
    _download(TINYSHAKESPEARE_URL, cached, TINYSHAKESPEARE_SHA256)
    return cached


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


def check_data_config(d) -> None:
    """The checks every task makes of its `data` section before any work: one DataError sentence each."""
    from wavejax.data.tokenizers import TOKENIZERS

    def need(ok: bool, message: str) -> None:
        if not ok:
            raise DataError(message)

    need(d.tokenizer in TOKENIZERS, f"data.tokenizer must be one of {TOKENIZERS}, got {d.tokenizer!r}.")
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
        text = _read(data_config.path) if data_config.path else _read(tinyshakespeare_path())
    else:
        raise DataError(f"data.dataset {name!r} is unknown; choose tinyshakespeare, file, or one of {sorted(HF_DATASETS)}.")
    if max_chars:
        text = text[:max_chars]
    train, val = split(text, data_config.val_fraction)
    return Corpus(name, train, val)
