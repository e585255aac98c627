"""experiments/benchmarks/bench_torch_step.py: the missing-torch error, the profile's kernel classification, and (where
PyTorch is installed) a short run end to end."""

import importlib.util
import json
import sys

import pytest

from experiments.benchmarks import bench_torch_step as bench


def test_without_torch_one_error_line_says_how_to_install_it(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch raises ImportError
    with pytest.raises(SystemExit) as exit_info:
        bench.main(["--steps", "1", "--alternations", "1"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: PyTorch is not installed") and '.[torch]' in err[0]


@pytest.mark.parametrize("argv, message", [(["--steps", "0"], "--steps must be >= 1"),
                                           (["--alternations", "0"], "--alternations must be >= 1")])
def test_bad_arguments_are_one_error_line(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        bench.parse_args(argv)
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_profile_classification():
    dot = 'f32[768,384]{1,0} fusion(%a, %b), kind=kCustom, metadata={op_name="jit(train_step)/jvp(GPT)/seg0/attn/qkv/dot_general"}'
    assert bench.kernel_kind("ynn_fusion.3", dot) == "matrix products"
    assert bench.kernel_kind("ynn_fusion.9", 'f32[12,4,64] fusion(%a), calls=%fused_reduce, metadata={op_name="x/reduce_max"}') == "reductions"
    assert bench.kernel_kind("multiply_erf_fusion", 'f32[768,512] fusion(%a), kind=kLoop, metadata={op_name="x/erf"}') == "elementwise and copies"
    assert bench.model_part("jit(train_step)/transpose(jvp(GPT))/closed_call/seg0/block/mixer/up/dot_general") == "MLP"
    assert bench.model_part("jit(train_step)/jvp(GPT)/closed_call/seg0/block/ln1/mul") == "LayerNorm"
    assert bench.model_part("jit(train_step)/jvp(GPT)/closed_call/seg0/block/attn/div") == "attention"
    assert bench.model_part("jit(train_step)/add") == "optimizer and step"


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="PyTorch is not installed (the torch extra)")
def test_short_run_prints_the_table_and_profile(tmp_path, capsys):
    out = tmp_path / "r.json"
    rc = bench.main(["--steps", "2", "--alternations", "2", "--warmup", "0", "--target", "100", "--profile",
                     "--results", str(out)])
    text = capsys.readouterr().out
    assert rc == 0 and "| alternation |" in text and "matrix products" in text and "PASS" in text
    data = json.loads(out.read_text())["data"]
    assert len(data["ratios"]) == 2 and data["profile"]["total_ms"] > 0 and data["profile"]["kernels_per_step"] > 50
