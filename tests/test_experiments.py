"""experiments.reproductions.compare and experiments.benchmarks.bench_train end to end on tiny shapes, plus their pure
helpers and FLOP counts."""

import argparse
import json
import os
import pathlib
import types

import numpy as np
import pytest
from experiments_support import run_main

from experiments import common as C
from experiments.benchmarks import bench_train
from experiments.reproductions import compare
from wavejax.errors import ConfigError

TINY_SETS = ["--set", "train.eval_every=3", "--set", "train.eval_batches=2", "--set", "train.sample_tokens=0"]
FAST_COMPILE = ["--set", "model.scan_layers=false"]  # halves XLA:CPU compile time of the tiny step


def _compare(args):
    """compare's main(args) in this process (each run still trains in a subprocess of its own, as compare runs them;
    seed 2 reuses seed 1's compiled step through the tests' compile cache): its exit status, stdout and stderr, named as
    a finished process's."""
    code, out, err = run_main(compare.main, args)
    return types.SimpleNamespace(returncode=code, stdout=out, stderr=err)


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    out = tmp_path_factory.mktemp("compare")
    args = ["--configs", "baseline:tiny", "--seeds", "2", "--steps", "6", *TINY_SETS, *FAST_COMPILE, "--out", str(out)]
    proc = _compare(args)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out, args, proc


# -- compare -----------------------------------------------------------------------------------

def test_compare_writes_table_json_and_plot(compared):
    out, _, proc = compared
    for name in ("results.md", "results.json", "loss_curves.png"):
        assert (out / name).is_file(), name
    assert (out / "loss_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = (out / "results.md").read_text()
    row = next(line for line in md.splitlines() if line.startswith("| baseline:tiny"))
    assert "±" in row and "(n=2)" in row, row
    assert row in proc.stdout  # the table is printed at the end

    results = json.loads((out / "results.json").read_text())
    runs = results["configs"][0]["runs"]
    assert [r["seed"] for r in runs] == [0, 1]
    assert {r["tokens"] for r in runs} == {results["tokens"]} == {6 * 16 * 64}
    assert all(r["steps"] == 6 and r["tokens_per_s"] > 0 for r in runs)
    assert runs[0]["val_loss"] != runs[1]["val_loss"]  # seeds differ
    for r in runs:  # every run really trained for the budget
        steps = [json.loads(x)["step"] for x in (pathlib.Path(r["workdir"]) / "metrics.jsonl").read_text().splitlines()]
        assert max(steps) * 16 * 64 == results["tokens"]


def test_compare_rerun_reuses_finished_runs(compared):
    out, args, _ = compared
    proc = _compare(args)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("(reused)") == 2


def test_compare_refuses_a_budget_that_does_not_divide(tmp_path):
    proc = _compare(["--configs", "baseline:tiny", "--tokens", "1000", "--out", str(tmp_path)])
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "1,024" in lines[0], proc.stderr
    assert not (tmp_path / "runs").exists()


def test_compare_refuses_an_unknown_config(tmp_path):
    proc = _compare(["--configs", "baseline:tiny,nosuch", "--out", str(tmp_path)])
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "unknown config 'nosuch'" in lines[0] and "baseline" in lines[0], proc.stderr


def test_steps_for_tokens_equalises_tokens():
    per_step = {"a": 16 * 64, "b": 12 * 64}
    steps = C.steps_for_tokens(3072, per_step)
    assert steps == {"a": 3, "b": 4}
    assert {steps[k] * per_step[k] for k in per_step} == {3072}
    assert C.token_budget(per_step["a"], steps=3) == 3072
    assert C.token_budget(per_step["a"], tokens=6144) == 6144
    assert C.token_budget(per_step["a"], default_steps=5) == 5120
    with pytest.raises(ConfigError, match="multiple of 3,072"):
        C.steps_for_tokens(1024 * 5, per_step)  # 5120 / 768 is not whole


def test_plan_gives_each_config_its_own_step_count(tmp_path):
    args = argparse.Namespace(configs="baseline:tiny,baseline:nanogpt_cpu", arg=None, seeds="2", steps=3, tokens=None,
                              set=["train.eval_every=2"], out=str(tmp_path))
    plan = compare.make_plan(args)
    assert plan["tokens"] == 3 * 16 * 64 and plan["seeds"] == [0, 1]
    tiny, cpu = plan["entries"]
    assert (tiny["steps"], cpu["steps"]) == (3, 4)  # batch 16 vs 12, block 64
    for e in plan["entries"]:
        for seed, r in zip([0, 1], e["runs"]):
            c = r["config"]
            assert c["seed"] == seed and c["train"]["steps"] == e["steps"] and c["train"]["eval_every"] == 2
            assert c["train"]["steps"] * c["train"]["batch_size"] * c["model"]["block_size"] == plan["tokens"]
    assert cpu["runs"][0]["config"]["train"]["decay_steps"] == 4  # nanogpt_cpu decays over the whole run
    assert cpu["runs"][1]["workdir"].endswith(os.path.join("runs", "baseline-nanogpt_cpu_s1"))


def test_overrides_are_typed_and_checked():
    config = C.load_config("baseline", "tiny")
    C.apply_overrides(config, ["train.lr=3e-4", "model.n_layer=3", "model.use_bias=true", "model.layer_attention=dense,dense",
                               "data.tokenizer=bpe"])
    assert config.train.lr == 3e-4 and config.model.n_layer == 3 and config.model.use_bias is True
    assert tuple(config.model.layer_attention) == ("dense", "dense") and config.data.tokenizer == "bpe"
    with pytest.raises(ConfigError, match="unknown config key 'train.nope'"):
        C.apply_overrides(config, ["train.nope=1"])
    with pytest.raises(ConfigError, match="bad value for model.n_layer"):
        C.apply_overrides(config, ["model.n_layer=two"])
    with pytest.raises(ConfigError, match="--steps or --tokens"):
        C.apply_overrides(config, ["train.steps=5"], compare.FORBIDDEN)


def test_throughput_leaves_out_compile_windows():
    records = [{"step": 10, "split": "train", "tokens_per_s": 1.0},  # compile window
               {"step": 20, "split": "train", "tokens_per_s": 100.0},
               {"step": 30, "split": "train", "tokens_per_s": 300.0},
               {"step": 30, "split": "val", "loss": 2.0}]
    assert compare.train_throughput(records, 8) == pytest.approx(150.0)  # 160 tokens over 0.8 s + 0.27 s
    assert compare.train_throughput(records, 8, resumed_from=25) == pytest.approx(100.0)
    assert compare.train_throughput(records[:1], 8) == pytest.approx(1.0)


def test_seed_band_mean_and_sample_std():
    from wavejax.analysis.plots import seed_band

    runs = [[{"step": s, "split": "val", "loss": v} for s, v in ((3, 2.0), (6, 1.0))],
            [{"step": s, "split": "val", "loss": v} for s, v in ((3, 4.0), (6, 1.0))]]
    steps, mean, std = seed_band(runs, "val")
    assert list(steps) == [3, 6] and list(mean) == [3.0, 1.0]
    assert std[0] == pytest.approx(2 ** 0.5) and std[1] == 0.0


# -- bench_train -------------------------------------------------------------------------------

def test_bench_train_prints_a_row(tmp_path, capsys):
    out = tmp_path / "bench.json"
    returncode = bench_train.main(["--configs", "baseline:tiny", "--steps", "3", "--warmup", "1", *FAST_COMPILE,
                                   "--json", str(out)])
    stdout, stderr = capsys.readouterr()
    assert returncode == 0, stdout + stderr
    row = next(line for line in stdout.splitlines() if line.startswith("| baseline:tiny"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1] == "106,880" and cells[2] == "16×64" and cells[-2] == "n/a" and cells[-1] == "1.00×", row
    rows = json.loads(out.read_text())["rows"]
    assert rows[0]["steps_timed"] == 3 and rows[0]["tokens_per_s"] > 0 and rows[0]["mfu"] is None


# -- wavejax.analysis.flops --------------------------------------------------------------------

def test_flops_per_token_matches_a_hand_count():
    import jax
    import jax.numpy as jnp

    from wavejax.analysis import flops
    from wavejax.models.gpt import build_model

    config = C.load_config("baseline", "tiny")  # L=2, d=64, T=64, no biases; char vocab of 65
    m, vocab = config.model, 65
    model = build_model(m, vocab)
    from flax.core.meta import unbox
    params = unbox(jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), jnp.zeros((1, m.block_size), jnp.int32)))["params"])
    d, L, T = 64, 2, 64
    block = d + 3 * d * d + d * d + d + 4 * d * d + 4 * d * d  # ln1, qkv, out, ln2, up, down
    n_matmul = L * block + vocab * d + d  # blocks, tied token table, ln_f (the position table is a lookup)
    assert flops.count_params(params) == n_matmul + T * d == 106_880
    assert flops.matmul_params(params) == n_matmul == 102_784
    assert flops.model_flops_per_token(m, params) == 6 * 102_784 + 12 * L * d * T == 715_008

    assert flops.peak_flops("NVIDIA H100 80GB HBM3", "bfloat16") == 989.4e12
    assert flops.peak_flops("NVIDIA H100 80GB HBM3", "float32") == 494.7e12
    assert flops.peak_flops("NVIDIA H100 PCIe", "bfloat16") == 756e12
    assert flops.peak_flops("NVIDIA H200", "bfloat16") == 989e12
    assert flops.peak_flops("NVIDIA A100-SXM4-80GB", "bfloat16") == 312e12
    assert flops.peak_flops("cpu") is None
    assert flops.mfu(1e6, 715_008, 989.4e12) == pytest.approx(1e6 * 715_008 / 989.4e12)
    assert flops.mfu(1e6, 715_008, None) is None


def test_future_leak_probe_finds_no_gap_for_a_causal_model(cli_run):
    """The probe on the shared tiny baseline run: hiding the future changes nothing for a causal model, in either way
    (the prefix mode compiles once per length, so it is checked on the first 8 positions)."""
    from experiments.claims import future_leak

    workdir, _ = cli_run
    row = future_leak.measure(str(workdir), batches=1, which="last", modes=("padded",))
    assert row["causal"] == "yes" and abs(row["padded_loss"] - row["window_loss"]) < 1e-4
    assert "| yes |" in future_leak.render([row], ("padded",))
    from wavejax.sample import load_run

    _, _, model, params = load_run(str(workdir), "last")
    x = np.random.default_rng(0).integers(0, 65, (2, 8)).astype(np.int32)
    y = np.roll(x, -1, axis=1)
    window = future_leak.window_loss(model, params, x, y)
    assert abs(future_leak.prefix_loss(model, params, x, y) - window) < 1e-4
