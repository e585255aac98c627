"""One of two processes of a multi-host run on this machine (started by tests/test_parallel.py with
JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES=2, JAX_PROCESS_ID): 3 steps of the tiny baseline through the CLI's
entry point, data parallel over the two processes' CPU devices. Process 0 prints the run's train losses as JSON."""

import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from wavejax import main as cli  # noqa: E402

from multidevice.train_meshes import config  # noqa: E402


def run(workdir: str) -> None:
    import jax

    summary = cli.run(config((-1, 1, 1)), workdir)
    assert jax.process_count() == 2 and jax.device_count() == 2, (jax.process_count(), jax.device_count())
    if jax.process_index() == 0:
        from wavejax.runlog import read_metrics

        losses = [r["loss"] for r in read_metrics(workdir) if r["split"] == "train"]
        print(json.dumps({"losses": losses, "val_loss": summary["val_loss"], "step": summary["step"]}))


if __name__ == "__main__":
    run(sys.argv[1])
