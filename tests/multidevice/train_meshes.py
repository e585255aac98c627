"""Run by tests/test_parallel.py in a process with 8 CPU devices: 3 steps of the tiny baseline on several meshes, and a
checkpoint written on 8 devices restored onto other meshes. Prints one JSON line with what it measured."""

import json
import os
import tempfile

import jax
import numpy as np

from wavejax.config import config_module
from wavejax.train.loop import Trainer

CONFIGS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "configs")
baseline = config_module(os.path.join(CONFIGS, "baseline.py"))

MESHES = {"single": (1, 1, 1), "dp8": (8, 1, 1), "fsdp8": (1, 8, 1), "dp4_fsdp2": (4, 2, 1)}


def short_run(c, mesh, steps=3, eval_batches=2):
    """Config c set to `steps` steps on `mesh`, logging every step, evaluating and checkpointing at the end."""
    c.mesh.data, c.mesh.fsdp, c.mesh.model = mesh
    t = c.train
    t.steps, t.log_every, t.eval_every, t.checkpoint_every, t.eval_batches = steps, 1, steps, steps, eval_batches
    t.sample_tokens, t.progress = 0, False
    return c


def config(mesh, steps=3):
    return short_run(baseline.get_config("tiny"), mesh, steps)


def trainer(mesh, workdir, c=None):
    n = int(np.prod(mesh))
    return Trainer(config(mesh) if c is None else c, workdir, devices=jax.devices()[:n])


def run(mesh, workdir, c=None):
    """Trains (config(mesh), or c) on the first prod(mesh) devices; returns the trainer and its train losses."""
    tr = trainer(mesh, workdir, c)
    try:
        tr.run()
    finally:
        tr.close()
    from wavejax.runlog import read_metrics

    losses = [r["loss"] for r in read_metrics(workdir) if r["split"] == "train"]
    return tr, losses


def specs(tree):
    return sorted({str(x.sharding.spec) for x in jax.tree.leaves(tree)})


def main():
    out = {"devices": jax.device_count(), "losses": {}, "param_specs": {}}
    root = tempfile.mkdtemp()
    trainers = {}
    for name, mesh in MESHES.items():
        tr, losses = run(mesh, os.path.join(root, name))
        trainers[name] = tr
        out["losses"][name] = losses
        out["param_specs"][name] = specs(tr.state.params)
        out.setdefault("opt_specs", {})[name] = specs(tr.state.opt_state)
    saved = jax.device_get(trainers["fsdp8"].state.params)
    for name, mesh in (("restore_single", (1, 1, 1)), ("restore_dp2_fsdp4", (2, 4, 1))):
        tr = trainer(mesh, os.path.join(root, "fsdp8"))  # same workdir: restores the 8-device checkpoint
        try:
            restored = jax.device_get(tr.state.params)
            out[name] = {
                "step": int(tr.state.step),
                "identical": all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(saved), jax.tree.leaves(restored))),
                "devices": sorted({len(x.sharding.device_set) for x in jax.tree.leaves(tr.state.params)}),
                "param_specs": specs(tr.state.params),
                "val_loss": tr.evaluate(),
            }
        finally:
            tr.close()
    out["val_loss_fsdp8"] = trainers["fsdp8"].evaluate()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
