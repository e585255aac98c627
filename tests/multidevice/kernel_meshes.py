"""Run by tests/test_parallel.py in a process with 8 CPU devices: 3 steps of tiny Harmonic GPT with its attention
through the Pallas kernel (interpret mode) on one device and on a data × fsdp = 2 × 4 mesh, where the kernel runs
under shard_map, and through XLA on one device. Prints one JSON line of the train losses."""

import json
import os
import sys
import tempfile

import jax

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))  # tests/: multidevice
from wavejax.config import config_module  # noqa: E402

from multidevice.train_meshes import run, short_run  # noqa: E402

CONFIGS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "configs")
harmonic = config_module(os.path.join(CONFIGS, "harmonic.py"))


def losses(preset, mesh, workdir):
    c = short_run(harmonic.get_config(preset), mesh, eval_batches=1)
    c.train.batch_size = 8  # divisible by the 2 x 4 mesh
    return run(mesh, workdir, c)[1]


def main():
    assert jax.device_count() == 8, jax.device_count()
    root = tempfile.mkdtemp()
    runs = {"pallas_single": ("tiny+pallas", (1, 1, 1)), "pallas_dp2_fsdp4": ("tiny+pallas", (2, 4, 1)),
            "xla_single": ("tiny", (1, 1, 1))}
    print(json.dumps({name: losses(p, m, os.path.join(root, name)) for name, (p, m) in runs.items()}))


if __name__ == "__main__":
    main()
