"""Run by tests/test_synthetic.py in a process with 8 CPU devices: 3 steps of the tiny MQAR run on one device and on
a 4x2 data x fsdp mesh. Prints one JSON line with both runs' train losses and final validation accuracy."""

import json
import os
import tempfile

from train_meshes import CONFIGS, run, short_run

from wavejax.config import config_module
from wavejax.runlog import read_metrics

synthetic = config_module(os.path.join(CONFIGS, "synthetic.py"))


def main():
    root, out = tempfile.mkdtemp(), {}
    for name, mesh in {"single": (1, 1, 1), "dp4_fsdp2": (4, 2, 1)}.items():
        workdir = os.path.join(root, name)
        _, losses = run(mesh, workdir, short_run(synthetic.get_config("mqar+tiny"), mesh))
        val = [r for r in read_metrics(workdir) if r["split"] == "val"]
        out[name] = {"losses": losses, "val_loss": val[-1]["loss"], "accuracy": val[-1]["accuracy"]}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
