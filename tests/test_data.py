"""Text sources, tokenizers and the deterministic batch sampler."""

import ml_collections
import numpy as np
import pytest

from wavejax.data import BatchSampler, prepare_lm_data, sources, tokenizers
from wavejax.data.tokenizers import BPETokenizer, CharTokenizer, load_tokenizer, save_tokenizer
from wavejax.errors import DataError

from conftest import configs

EDGE_CASES = [
    "",
    " ",
    "   leading and trailing   ",
    "\n\n\nthree newlines",
    "tabs\tand\r\nwindows line ends\r\n",
    "héllo wörld, naïve café",
    "日本語のテキスト",
    "emoji 🎉🚀 and a zero-width\u200bspace",
    "\x00control\x07chars",
    "ROMEO:\nBut, soft! what light through yonder window breaks?",
]


def _data_config(**kw):
    c = ml_collections.ConfigDict(dict(dataset="tinyshakespeare", path="", tokenizer="char", vocab_size=300,
                                       val_fraction=0.1, max_chars=0))
    c.update(kw)
    return c


@pytest.fixture(scope="module")
def corpus():
    return sources.load_corpus(_data_config())


@pytest.fixture(scope="module")
def bpe(corpus):
    return BPETokenizer.train(corpus.train, 300)


# --- sources ----------------------------------------------------------------------------------

def test_tinyshakespeare_ships_with_the_package_and_is_checksummed():
    import hashlib

    text = sources.tinyshakespeare()
    assert len(text) == 1115394 and text.startswith("First Citizen:\nBefore we proceed any further")
    assert hashlib.sha256(text.encode("utf-8")).hexdigest() == sources.TINYSHAKESPEARE_SHA256


def test_split_is_90_10(corpus):
    text = sources.tinyshakespeare()
    assert len(corpus.train) == int(len(text) * 0.9) == 1003854
    assert len(corpus.val) == len(text) - 1003854
    assert corpus.train + corpus.val == text
    assert corpus.name == "tinyshakespeare"


def test_max_chars_truncates_before_split(tmp_path):
    f = tmp_path / "t.txt"
    f.write_text("abcdefghij" * 100, encoding="utf-8")
    c = sources.load_corpus(_data_config(dataset="file", path=str(f), max_chars=500, val_fraction=0.2))
    assert (len(c.train), len(c.val)) == (400, 100)


def test_a_corrupt_shipped_corpus_is_refused(monkeypatch):
    import lzma

    class Files:
        def joinpath(self, name):
            return self

        def read_bytes(self):
            return lzma.compress(b"not the real corpus\n")

    monkeypatch.setattr(sources.resources, "files", lambda package: Files())
    sources.tinyshakespeare.cache_clear()
    try:
        with pytest.raises(DataError, match="does not match its sha256; reinstall wavejax"):
            sources.load_corpus(_data_config())
    finally:
        sources.tinyshakespeare.cache_clear()


def test_hugging_face_sources_without_the_extra_name_it(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_datasets(name, *args, **kwargs):
        if name == "datasets":
            raise ImportError("No module named 'datasets'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_datasets)
    with pytest.raises(DataError, match=r"needs the Hugging Face datasets library: pip install -e '.\[hf\]'"):
        sources.load_corpus(_data_config(dataset="wikitext-2-raw-v1"))


def test_non_utf8_file_raises(tmp_path):
    f = tmp_path / "latin1.txt"
    f.write_bytes("caf\xe9".encode("latin-1") * 100)
    with pytest.raises(DataError, match="not UTF-8"):
        sources.load_corpus(_data_config(dataset="file", path=str(f)))


def test_unknown_dataset_raises():
    with pytest.raises(DataError, match="data.dataset 'nope' is unknown"):
        sources.load_corpus(_data_config(dataset="nope"))


# --- tokenizers -------------------------------------------------------------------------------

def test_char_tokenizer_round_trips_held_out_text(corpus):
    tok = CharTokenizer.train(corpus.train + corpus.val)
    assert tok.vocab_size == 65
    assert tok.chars == "".join(sorted(set(corpus.train + corpus.val)))
    ids = tok.encode(corpus.val)
    assert ids.dtype == np.int32 and len(ids) == len(corpus.val)
    assert ids.min() >= 0 and ids.max() < 65
    assert tok.decode(ids) == corpus.val
    assert tok.encode("ab").tolist() == [tok.chars.index("a"), tok.chars.index("b")]


def test_char_tokenizer_rejects_unknown_character():
    tok = CharTokenizer.train("hello")
    with pytest.raises(DataError, match="'z' is not in this run's vocabulary"):
        tok.encode("hez")


def test_bpe_vocab_size_is_honoured(bpe):
    assert bpe.vocab_size == 300
    assert bpe.kind == "bpe"


def test_bpe_round_trips_held_out_text_and_compresses(bpe, corpus):
    ids = bpe.encode(corpus.val)
    assert ids.max() < 300
    assert len(ids) < 0.8 * len(corpus.val)  # merges were learned, not just bytes
    assert bpe.decode(ids) == corpus.val


@pytest.mark.parametrize("text", EDGE_CASES, ids=range(len(EDGE_CASES)))
def test_bpe_round_trips_unicode_and_whitespace(bpe, text):
    ids = bpe.encode(text)
    assert bpe.decode(ids) == text
    assert (len(ids) == 0) == (text == "")


def test_tokenizers_save_and_load(bpe, tmp_path):
    char = CharTokenizer.train("the quick brown fox\n")
    for tok, text in ((char, "the fox\n"), (bpe, EDGE_CASES[-1] + EDGE_CASES[7])):
        workdir = tmp_path / tok.kind
        workdir.mkdir()
        save_tokenizer(tok, str(workdir))
        assert (workdir / tokenizers.TOKENIZER_FILE).is_file()
        loaded = load_tokenizer(str(workdir))
        assert type(loaded) is type(tok) and loaded.vocab_size == tok.vocab_size
        np.testing.assert_array_equal(loaded.encode(text), tok.encode(text))
        assert loaded.decode(tok.encode(text)) == text
    with pytest.raises(DataError, match="has no tokenizer.json"):
        load_tokenizer(str(tmp_path))


# --- pipeline ---------------------------------------------------------------------------------

def _lm_config(**data):
    baseline = configs("baseline")
    c = baseline.get_config("tiny")
    c.data.update(data)
    return c


def test_prepare_lm_data_char():
    data = prepare_lm_data(_lm_config())
    assert data.vocab_size == 65
    assert (len(data.train), len(data.val)) == (1003854, 111540)
    assert data.train.dtype == np.uint16
    assert data.tokenizer.decode(data.val[:7]) == sources.load_corpus(_data_config()).val[:7]


def test_prepare_lm_data_too_short_raises(tmp_path):
    f = tmp_path / "short.txt"
    f.write_text("x" * 500, encoding="utf-8")  # 50 val chars < block_size + 2
    with pytest.raises(DataError, match=r"the val split of file has 50 tokens, fewer than model.block_size \+ 2 = 66"):
        prepare_lm_data(_lm_config(dataset="file", path=str(f)))


def test_prepare_lm_data_rejects_tokenizer_of_another_kind():
    with pytest.raises(DataError, match="saved tokenizer is char but the config asks for bpe"):
        prepare_lm_data(_lm_config(tokenizer="bpe", max_chars=20000), tokenizer=CharTokenizer.train("abc"))


# --- batch sampler ----------------------------------------------------------------------------

TOKENS = np.arange(10_000, dtype=np.uint16)  # token value == its offset, so windows are easy to check


def test_sampler_is_a_pure_function_of_seed_and_position():
    a = BatchSampler(TOKENS, batch_size=8, block_size=16, seed=3)
    b = BatchSampler(TOKENS, batch_size=8, block_size=16, seed=3)
    x0, y0 = a.batch_at(5)
    x1, y1 = b.batch_at(5)
    np.testing.assert_array_equal(x0, x1)
    np.testing.assert_array_equal(y0, y1)
    assert x0.shape == y0.shape == (8, 16) and x0.dtype == np.int32
    assert not np.array_equal(a.batch_at(6)[0], x0)
    assert not np.array_equal(BatchSampler(TOKENS, 8, 16, seed=4).batch_at(5)[0], x0)


def test_sampler_targets_are_inputs_shifted_by_one():
    x, y = BatchSampler(TOKENS, 8, 16, seed=0).batch_at(0)
    np.testing.assert_array_equal(x[:, 1:], y[:, :-1])
    # each row is a contiguous window of the stream and the targets are the next tokens
    np.testing.assert_array_equal(x, x[:, :1] + np.arange(16))
    np.testing.assert_array_equal(y, x + 1)
    assert len(set(x[:, 0].tolist())) > 1


def test_sampler_state_restore_resumes_the_same_stream():
    full = BatchSampler(TOKENS, 4, 16, seed=1)
    stream = [next(full) for _ in range(6)]
    first = BatchSampler(TOKENS, 4, 16, seed=1)
    for _ in range(3):
        next(first)
    state = first.state()
    assert state == {"seed": 1, "position": 3}
    resumed = BatchSampler(TOKENS, 4, 16, seed=1)
    resumed.restore(state)
    for expected in stream[3:]:
        got = next(resumed)
        np.testing.assert_array_equal(got[0], expected[0])
        np.testing.assert_array_equal(got[1], expected[1])
    with pytest.raises(DataError, match="seed 1 differs from config seed 2"):
        BatchSampler(TOKENS, 4, 16, seed=2).restore(state)


def test_sampler_process_slices_concatenate_to_the_global_batch():
    whole = BatchSampler(TOKENS, 8, 16, seed=7).batch_at(11)
    parts = [BatchSampler(TOKENS, 8, 16, seed=7, process_index=i, process_count=2).batch_at(11) for i in range(2)]
    assert parts[0][0].shape == (4, 16)
    np.testing.assert_array_equal(np.concatenate([p[0] for p in parts]), whole[0])
    np.testing.assert_array_equal(np.concatenate([p[1] for p in parts]), whole[1])
    with pytest.raises(DataError, match="does not divide over 3 processes"):
        BatchSampler(TOKENS, 8, 16, seed=7, process_count=3)


def test_sampler_rejects_too_short_data():
    with pytest.raises(DataError, match="the val split has 17 tokens but model.block_size is 16"):
        BatchSampler(np.arange(17), 2, 16, seed=0, split="val")
    BatchSampler(np.arange(18), 2, 16, seed=0).batch_at(0)  # block_size + 2 is enough


def test_sampler_windows_stay_in_bounds():
    tokens = np.arange(40, dtype=np.int32)
    s = BatchSampler(tokens, 64, 16, seed=0)
    for p in range(20):
        x, y = s.batch_at(p)
        assert x.min() >= 0 and y.max() <= 39
        np.testing.assert_array_equal(y, x + 1)


def test_hugging_face_source_offline_is_one_data_error():
    pytest.importorskip("datasets")  # the hf extra
    with pytest.raises(DataError, match="could not load Hugging Face dataset 'wikitext-2-raw-v1'"):
        sources.load_corpus(_data_config(dataset="wikitext-2-raw-v1"))


@pytest.mark.slow
def test_the_wheel_carries_the_corpus(tmp_path):
    """`pip install .` (not editable) installs the corpus: the built wheel holds it."""
    import subprocess
    import sys
    import zipfile

    from conftest import REPO

    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path), str(REPO)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    [wheel] = tmp_path.glob("wavejax-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "wavejax/data/tinyshakespeare.txt.xz" in names and "pallas_kernels/__init__.py" in names
