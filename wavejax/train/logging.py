"""Metrics to `metrics.jsonl` and TensorBoard (tensorboardX), written by process 0 only."""

from __future__ import annotations

import json
import os

import jax


class MetricWriter:
    def __init__(self, workdir: str, resume_step: int = 0):
        self.enabled = jax.process_index() == 0
        self.path = os.path.join(workdir, "metrics.jsonl")
        self._tb = None
        if not self.enabled:
            return
        if os.path.exists(self.path):
            self._truncate_after(resume_step)
        from tensorboardX import SummaryWriter

        self._tb = SummaryWriter(os.path.join(workdir, "tb"), purge_step=resume_step or None)

    def _truncate_after(self, step: int) -> None:
        """Drops records past the restored step (logged before a crash but never checkpointed)."""
        with open(self.path, encoding="utf-8") as f:
            keep = [line for line in f if line.strip() and json.loads(line).get("step", 0) <= step]
        with open(self.path + ".tmp", "w", encoding="utf-8") as f:
            f.writelines(keep)
        os.replace(self.path + ".tmp", self.path)

    def write(self, step: int, split: str, values: dict) -> None:
        if not self.enabled:
            return
        record = {"step": int(step), "split": split, **{k: float(v) for k, v in values.items()}}
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        for k, v in values.items():
            self._tb.add_scalar(f"{split}/{k}", float(v), int(step))

    def text(self, step: int, tag: str, text: str) -> None:
        if self.enabled:
            self._tb.add_text(tag, text, int(step))

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()


def read_metrics(workdir: str) -> list[dict]:
    path = os.path.join(workdir, "metrics.jsonl")
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]
