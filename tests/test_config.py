"""Config schema (wavejax.config.validate) and the CLI's handling of bad input: one `error:` sentence,
exit status 2, no traceback, and no workdir created."""

import math
import os
import subprocess
import sys

import pytest

from wavejax.config import apply_preset, validate
from wavejax.errors import ConfigError

from conftest import REPO, assert_one_error_line, configs, run_module

baseline = configs("baseline")


def _config(preset="tiny"):
    return baseline.get_config(preset)


@pytest.mark.parametrize("preset", [None, "tiny", "nanogpt_cpu"])
def test_shipped_presets_validate(preset):
    c = validate(_config(preset))
    assert c.model.d_model % c.model.n_head == 0


def test_presets_change_what_they_name():
    tiny, full = _config("tiny"), _config(None)
    assert (tiny.model.n_layer, tiny.model.d_model, tiny.train.steps) == (2, 64, 200)
    assert (full.model.n_layer, full.model.n_head, full.model.d_model, full.model.block_size) == (6, 6, 384, 256)
    assert _config("nanogpt_cpu").train.decay_steps == 2000


def test_unknown_preset_names_the_choices():
    with pytest.raises(ConfigError, match=r"unknown config argument 'huge'; choose one of: nanogpt_cpu, tiny \(combine with \+\)\."):
        apply_preset(_config(None), "huge", baseline.PRESETS)


# (dotted key, bad value, a fragment the message must contain)
BAD_VALUES = [
    ("task", "vision", "task must be one of"),
    ("data.tokenizer", "word", "data.tokenizer must be one of"),
    ("data.dataset", "file", "data.dataset='file' needs --config.data.path"),
    ("data.path", "/nonexistent/corpus.txt", "'/nonexistent/corpus.txt' does not exist"),
    ("data.val_fraction", 0.0, "data.val_fraction must be between 0 and 1"),
    ("data.val_fraction", 1.0, "data.val_fraction must be between 0 and 1"),
    ("data.max_chars", -5, "data.max_chars must be >= 0"),
    ("model.n_head", 5, "model.d_model (64) must be divisible by model.n_head (5)"),
    ("model.n_layer", 0, "model.n_layer must be > 0, got 0"),
    ("model.block_size", -1, "model.block_size must be > 0"),
    ("model.dropout", 1.5, "model.dropout must be in [0, 1), got 1.5"),
    ("model.family", "gtp", "model.family must be one of"),
    ("model.attn_dropout", -0.1, "model.attn_dropout must be in [0, 1)"),
    ("model.dtype", "float16", "model.dtype must be one of"),
    ("model.embedding", "rotary", "model.embedding 'rotary' is unknown"),
    ("model.mixer", "moe", "model.mixer 'moe' is unknown"),
    ("model.attention", "sparse", "attention 'sparse' is unknown"),
    ("model.layer_attention", ("dense",), "model.layer_attention has 1 entries but model.n_layer is 2"),
    ("model.layer_attention", ("dense", "sparse"), "attention 'sparse' is unknown"),
    ("train.lr", -1.0, "train.lr must be > 0, got -1.0"),
    ("train.lr", math.inf, "train.lr must be > 0, got inf"),
    ("train.steps", 0, "train.steps must be > 0"),
    ("train.grad_clip", -1.0, "train.grad_clip must be >= 0"),
    ("train.min_lr", 1.0, "train.min_lr (1.0) must not exceed train.lr"),
    ("train.beta2", 1.0, "train.beta2 must be in [0, 1)"),
    ("train.grad_accum", 3, "train.batch_size (16) must be divisible by train.grad_accum (3)"),
    ("train.optimizer", "lion", "train.optimizer 'lion' is unknown"),
    ("mesh.data", 0, "mesh.data must be -1 (the rest) or >= 1, got 0"),
]


@pytest.mark.parametrize("key,value,fragment", BAD_VALUES, ids=[f"{k}={v}" for k, v, _ in BAD_VALUES])
def test_validate_rejects_bad_values_with_one_sentence(key, value, fragment):
    c = _config("tiny")
    *parents, leaf = key.split(".")
    node = c
    for p in parents:
        node = node[p]
    node[leaf] = value
    with pytest.raises(ConfigError) as info:
        validate(c)
    message = str(info.value)
    assert fragment in message
    assert "\n" not in message and message.endswith(".")


def test_validate_rejects_small_bpe_vocab_and_two_free_mesh_axes():
    c = _config("tiny")
    c.data.tokenizer, c.data.vocab_size = "bpe", 100
    with pytest.raises(ConfigError, match="data.vocab_size must be >= 257"):
        validate(c)
    c = _config("tiny")
    c.mesh.fsdp = -1
    with pytest.raises(ConfigError, match="at most one mesh axis may be -1"):
        validate(c)


# --- the command line -------------------------------------------------------------------------

CLI_CASES = {
    "unknown-model-key": (["--config.model.foo=1"], "unknown config key 'model.foo': model has keys"),
    "unknown-section": (["--config.modl.x=1"], "unknown config key 'modl.x': the config has keys data, mesh, model"),
    "wrong-type": (["--config.model.n_head=abc"], "--config.model.n_head=abc"),
    "width-not-divisible": (["--config.model.n_head=5"], "must be divisible by model.n_head (5)"),
    "block-larger-than-data": (["--config.model.block_size=200000"], "fewer than model.block_size + 2 = 200002"),
    "negative-lr": (["--config.train.lr=-1"], "train.lr must be > 0"),
    "dropout-above-one": (["--config.model.dropout=1.5"], "model.dropout must be in [0, 1), got 1.5"),
    "missing-data-file": (["--config.data.dataset=file", "--config.data.path=/nonexistent"], "'/nonexistent' does not exist"),
}


@pytest.mark.parametrize("case", sorted(CLI_CASES))
def test_cli_bad_override_is_one_error_line(case, tmp_path):
    args, fragment = CLI_CASES[case]
    workdir = tmp_path / "run"
    proc = run_module("wavejax.main", "--config=configs/baseline.py:tiny", f"--workdir={workdir}", *args)
    line = assert_one_error_line(proc, 2)
    assert fragment in line
    assert not workdir.exists(), "a rejected config must not leave a half-written workdir"


@pytest.mark.parametrize(
    "args,fragment",
    [
        (["--config=configs/nope.py"], "config file 'configs/nope.py' does not exist"),
        (["--config=configs/baseline.py:huge"], "unknown config argument 'huge'; choose one of: nanogpt_cpu, tiny (combine with +)."),
    ],
    ids=["missing-config-file", "unknown-preset"],
)
def test_cli_bad_config_file_is_one_error_line(args, fragment, tmp_path):
    workdir = tmp_path / "run"
    proc = run_module("wavejax.main", *args, f"--workdir={workdir}")
    assert fragment in assert_one_error_line(proc, 2)
    assert not workdir.exists()


def test_cli_default_workdir_and_required_config(tmp_path):
    from wavejax.main import default_workdir

    assert default_workdir(["prog", "--config=configs/harmonic.py"]) == os.path.join("runs", "harmonic")
    assert default_workdir(["prog", "--config=configs/phase.py:tiny+faithful", "--config.seed=1"]) == \
        os.path.join("runs", "phase-tiny-faithful")
    proc = run_module("wavejax.main", f"--workdir={tmp_path / 'run'}")
    assert "--config is required" in assert_one_error_line(proc, 2)
    assert not (tmp_path / "run").exists()


def test_loading_every_config_file_leaves_the_standard_library_alone(tmp_path):
    """Config files are loaded by path: after loading all of them (configs/wave.py among them), `import wave` is the
    standard library's module, and wavejax imports from any folder."""
    script = f"""
import glob, os, sys, sysconfig
from wavejax.config import load_config_file
for path in sorted(glob.glob(os.path.join({str(REPO)!r}, "configs", "*.py"))):
    load_config_file(path)
import wave
assert os.path.dirname(wave.__file__) == sysconfig.get_paths()["stdlib"], wave.__file__
assert not any(p.endswith("configs") for p in sys.path), sys.path
print("ok")
"""
    proc = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr


def test_presets_combine_in_any_order_and_contradictions_are_refused():
    wave, field = configs("wave"), configs("field")
    assert field.get_config("tiny+pallas").to_json() == field.get_config("pallas+tiny").to_json()  # sizes go first
    assert field.get_config("small+random_ic").field.seed_faithful is False  # a base preset may be changed
    with pytest.raises(ConfigError, match=r"presets 'pure_elu' and 'pallas' contradict each other: pure_elu sets "
                                          r"model.attention='wave_pure' and pallas sets "
                                          r"model.attention='wave_interference'; use one of them."):
        wave.get_config("tiny+pure_elu+pallas")
