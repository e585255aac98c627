"""Run by tests/test_parallel.py with XLA_FLAGS=--xla_force_host_platform_device_count=8: the tiny field sweeps
(oscillator-mode trials and Kuramoto trials, through XLA and through the Pallas kernel) and a holographic-memory learning pass, each with its batch axis split
over the 8 CPU devices and on one device. Prints one JSON line of the largest relative differences."""

import json
import os
import tempfile

import jax
import jax.numpy as jnp
import numpy as np

from wavejax.config import config_module
from wavejax.field import task as E
from wavejax.field import trials
from wavejax.memory import so4, store

field_configs = config_module(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "configs", "field.py"))


def _max_diff(a: dict, b: dict) -> float:
    """Largest |a - b| / max(1, |b|) over every array (NaN where both are NaN counts as equal)."""
    worst = 0.0
    for k in a:
        x, y = np.asarray(a[k], np.float64), np.asarray(b[k], np.float64)
        if x.shape != y.shape:
            return float("inf")
        both_nan = np.isnan(x) & np.isnan(y)
        worst = max(worst, float(np.max(np.where(both_nan, 0.0, np.abs(x - y) / np.maximum(1.0, np.abs(y))), initial=0.0)))
    return worst


def field_modes(shard: bool) -> dict:
    f = field_configs.get_config("tiny").field
    f.shard_trials, f.trial_batch, f.progress = shard, 6, False  # 6 -> 8 per call when split: padding is exercised
    setup = trials.mode_setup(trials.mode_graph(f), f.modes, f.eigen)
    res = trials.run_mode_trials(setup, f, seed=0, timesteps=f.timesteps, trials=11)
    return {k: v for k, v in res.items() if isinstance(v, np.ndarray)}


def field_coupling(shard: bool, workdir: str, preset: str = "coupling+tiny") -> dict:
    config = field_configs.get_config(preset)
    config.field.shard_trials, config.field.progress = shard, False
    summary = E.run_task(config, workdir)
    with open(os.path.join(workdir, "coupling.csv"), encoding="utf-8") as fh:
        rows = [line.strip().split(",") for line in fh]
    numeric = []
    for row in rows[1:]:
        for cell in row:
            try:
                numeric.append(float(cell))
            except ValueError:
                pass
    return {"csv": np.asarray(numeric), "summary": summary}


def memory(shard: bool) -> dict:
    v = 40
    spec = store.StoreSpec(vocab_size=v, context_length=6, levels=2, stream_chunk=64)
    tokens = np.random.default_rng(3).integers(0, v, 700).astype(np.int32)
    table = so4.random_so4(jax.random.PRNGKey(0), (v,))
    mem, _ = store.learn_stream(spec, store.init_memory(spec, jnp.asarray(table), cache_capacity=16), tokens,
                                shard=shard)
    return {"slots": mem.slots, "counts": mem.counts, "h1": mem.cache.h1, "h2": mem.cache.h2,
            "target": mem.cache.target, "size": mem.cache.size}


def main() -> None:
    assert jax.device_count() == 8, jax.device_count()
    out = {"modes": _max_diff(field_modes(True), field_modes(False))}
    with tempfile.TemporaryDirectory() as tmp:
        a, b = field_coupling(True, os.path.join(tmp, "a")), field_coupling(False, os.path.join(tmp, "b"))
        c, d = (field_coupling(shard, os.path.join(tmp, f"p{shard}"), "tiny+pallas") for shard in (True, False))
    out["coupling"] = _max_diff({"csv": a["csv"]}, {"csv": b["csv"]})
    out["coupling_rows"] = int(len(a["csv"]))
    out["pallas_coupling"] = _max_diff({"csv": c["csv"]}, {"csv": d["csv"]})  # the kernel under shard_map
    out["pallas_rows"] = int(len(c["csv"]))
    out["memory"] = _max_diff(memory(True), memory(False))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
