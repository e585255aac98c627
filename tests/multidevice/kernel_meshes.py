"""Run by tests/test_parallel.py in a process with 8 CPU devices: 3 steps of tiny Harmonic GPT with its attention
through the Pallas kernel (interpret mode) on one device and on a data × fsdp = 2 × 4 mesh, where the kernel runs
under shard_map, and through XLA on one device. Prints one JSON line of the train losses."""

import json
import os
import sys
import tempfile

import jax

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "configs"))

import harmonic  # noqa: E402
from wavejax.train.logging import read_metrics  # noqa: E402
from wavejax.train.loop import Trainer  # noqa: E402


def losses(preset, mesh, workdir):
    c = harmonic.get_config(preset)
    c.mesh.data, c.mesh.fsdp, c.mesh.model = mesh
    t = c.train
    t.batch_size, t.steps, t.log_every, t.eval_every, t.checkpoint_every, t.eval_batches = 8, 3, 1, 3, 3, 1
    t.sample_tokens, t.progress = 0, False
    n = mesh[0] * mesh[1] * mesh[2]
    tr = Trainer(c, workdir, devices=jax.devices()[:n])
    try:
        tr.run()
    finally:
        tr.ckpt.close()
    return [r["loss"] for r in read_metrics(workdir) if r["split"] == "train"]


def main():
    assert jax.device_count() == 8, jax.device_count()
    root = tempfile.mkdtemp()
    runs = {"pallas_single": ("tiny+pallas", (1, 1, 1)), "pallas_dp2_fsdp4": ("tiny+pallas", (2, 4, 1)),
            "xla_single": ("tiny", (1, 1, 1))}
    print(json.dumps({name: losses(p, m, os.path.join(root, name)) for name, (p, m) in runs.items()}))


if __name__ == "__main__":
    main()
