"""Generation: the `wavejax.sample` command line and `wavejax.models.generate.generate`."""

import jax
import numpy as np
import pytest

from wavejax.models.generate import generate
from wavejax.sample import load_run

from conftest import assert_one_error_line, run_module


@pytest.fixture(scope="module")
def loaded(cli_run):
    """The shared CLI run loaded back (needs that run: the tests using it are marked slow)."""
    workdir, _ = cli_run
    return load_run(str(workdir))


@pytest.mark.slow
def test_sample_cli_continues_the_prompt(cli_run):
    workdir, _ = cli_run
    proc = run_module("wavejax.sample", f"--workdir={workdir}", "--prompt=ROMEO:", "--max_new_tokens=20")
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stdout.startswith("ROMEO:")
    text = proc.stdout[:-1]  # print() adds one newline
    assert len(text) == len("ROMEO:") + 20  # one character per token


def test_sample_cli_missing_workdir(tmp_path):
    proc = run_module("wavejax.sample", f"--workdir={tmp_path / 'nope'}", "--prompt=ROMEO:", "--max_new_tokens=5")
    assert "nope does not exist; pass the folder of a wavejax training run" in assert_one_error_line(proc, 2)


@pytest.mark.slow
def test_sample_cli_prompt_outside_the_vocabulary(cli_run):
    workdir, _ = cli_run
    proc = run_module("wavejax.sample", f"--workdir={workdir}", "--prompt=ROMEO\u20ac", "--max_new_tokens=5")
    assert "'\u20ac' is not in this run's vocabulary" in assert_one_error_line(proc, 2)


@pytest.mark.slow
def test_load_run_restores_the_trained_model(loaded, cli_run):
    config, tokenizer, model, params = loaded
    assert config.model.d_model == 64 and tokenizer.vocab_size == 65
    assert params["embed"]["wte"]["embedding"].shape == (65, 64)
    assert all(bool(np.isfinite(p).all()) for p in jax.tree.leaves(params))


@pytest.mark.slow
def test_generate_is_deterministic_for_a_key(loaded):
    config, tokenizer, model, params = loaded
    prompt = tokenizer.encode("ROMEO:")
    run = lambda seed: np.asarray(generate(model, params, prompt, 70, jax.random.PRNGKey(seed), 64, 1.0, 0))  # noqa: E731
    a, b, c = run(0), run(0), run(1)
    assert a.shape == (len(prompt) + 70,)
    np.testing.assert_array_equal(a[: len(prompt)], prompt)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert a.min() >= 0 and a.max() < 65


@pytest.mark.slow
def test_top_k_1_is_greedy_across_the_sliding_window(loaded):
    config, tokenizer, model, trained = loaded
    # 8 training steps only teach "predict a space"; noise on the weights makes the greedy path
    # depend on the context, so a wrong window or position would show.
    rng = np.random.default_rng(0)
    params = jax.tree.map(lambda p: np.asarray(p) + rng.normal(0, 0.1, p.shape).astype(np.float32), trained)
    block = config.model.block_size
    prompt = tokenizer.encode("ROMEO:").tolist()
    new = 70  # runs past block_size, so the window slides
    out = np.asarray(generate(model, params, prompt, new, jax.random.PRNGKey(3), block, 0.7, 1)).tolist()

    logits_of = jax.jit(lambda window: model.apply({"params": params}, window[None], True)[0])
    ids = list(prompt)
    for _ in range(new):
        if len(ids) <= block:
            window, last = ids + [0] * (block - len(ids)), len(ids) - 1
        else:
            window, last = ids[-block:], block - 1
        ids.append(int(np.argmax(np.asarray(logits_of(np.asarray(window, np.int32)))[last])))
    assert out == ids
    assert len(set(out[len(prompt):])) > 3  # the path is not one repeated token


def test_generate_rejects_an_empty_prompt():
    with pytest.raises(ValueError, match="at least one token"):
        generate(None, None, [], 5, jax.random.PRNGKey(0), 64)
