"""Metrics to `metrics.jsonl` and TensorBoard, and the run's record files; written by process 0 only.

TensorBoard events are written synchronously (tensorboardX's event file writer without its queue thread), so a full
disk raises in the training loop at once instead of leaving a queue that blocks forever. Nothing is opened until the
first write: a finished run on a read-only disk can be rerun.

A crash can leave a torn last line in `metrics.jsonl`; on resume such lines, and records past the restored step
(logged but never checkpointed), are dropped and the run says so.
"""

from __future__ import annotations

import json
import os
import re
import time

import jax

from wavejax.errors import display_path, storage_error
from wavejax.rundir import warn, write_atomic

METRICS_FILE = "metrics.jsonl"
SAMPLES_FILE = "samples.txt"
_SAMPLE_HEADER = re.compile(r"^=== step (\d+) ===$", re.MULTILINE)


def _parse_lines(path: str) -> tuple[list[tuple[str, dict]], int]:
    """([(line, record)], number of unreadable lines) of a JSON-lines file."""
    good, bad = [], 0
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError:
                bad += 1
                continue
            if isinstance(record, dict):
                good.append((line if line.endswith("\n") else line + "\n", record))
            else:
                bad += 1
    return good, bad


def read_metrics(workdir: str) -> list[dict]:
    """The records of a run's metrics.jsonl (unreadable lines, e.g. a torn last one, are skipped)."""
    path = os.path.join(workdir, METRICS_FILE)
    if not os.path.exists(path):
        return []
    return [r for _, r in _parse_lines(path)[0]]


def drop_metrics_after(workdir: str, step: int) -> None:
    """Keeps the records up to `step` and drops unreadable lines, saying what was dropped."""
    path = os.path.join(workdir, METRICS_FILE)
    if not os.path.exists(path):
        return
    good, bad = _parse_lines(path)
    keep = [line for line, r in good if r.get("step", 0) <= step]
    if bad:
        warn(f"dropped {bad} unreadable line{'s' * (bad > 1)} of {display_path(path)} (a write cut short by a crash).")
    if bad or len(keep) != len(good):
        write_atomic(path, "".join(keep))


def drop_samples_after(workdir: str, step: int) -> None:
    """Drops the samples.txt entries of steps after `step` (written before a crash, never checkpointed)."""
    path = os.path.join(workdir, SAMPLES_FILE)
    if not os.path.exists(path):
        return
    with open(path, encoding="utf-8", errors="replace") as f:
        text = f.read()
    late = next((m.start() for m in _SAMPLE_HEADER.finditer(text) if int(m.group(1)) > step), None)
    if late is not None:
        write_atomic(path, text[:late])


class MetricWriter:
    def __init__(self, workdir: str, resume_step: int = 0):
        self.enabled = jax.process_index() == 0
        self.workdir = workdir
        self.path = os.path.join(workdir, METRICS_FILE)
        self.resume_step = resume_step
        self._tb = None

    def _events(self):
        if self._tb is None:
            from tensorboardX.event_file_writer import EventsWriter
            from tensorboardX.proto.event_pb2 import Event, SessionLog

            tb_dir = os.path.join(self.workdir, "tb")
            os.makedirs(tb_dir, exist_ok=True)
            self._tb = EventsWriter(os.path.join(tb_dir, "events"))
            if self.resume_step:  # TensorBoard hides the events of later steps from earlier files
                self._tb.write_event(Event(wall_time=time.time(), step=self.resume_step,
                                           session_log=SessionLog(status=SessionLog.START)))
        return self._tb

    def _guarded(self, fn, where: str) -> None:
        try:
            fn()
        except OSError as e:
            raise storage_error(e, display_path(where)) from None

    def write(self, step: int, split: str, values: dict) -> None:
        if not self.enabled:
            return
        from tensorboardX.proto.event_pb2 import Event
        from tensorboardX.summary import scalar

        record = {"step": int(step), "split": split, **{k: float(v) for k, v in values.items()}}

        def append():
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")

        def events():
            tb = self._events()
            for k, v in values.items():
                tb.write_event(Event(wall_time=time.time(), step=int(step), summary=scalar(f"{split}/{k}", float(v))))
            tb.flush()

        self._guarded(append, self.path)
        self._guarded(events, os.path.join(self.workdir, "tb"))

    def text(self, step: int, tag: str, text: str) -> None:
        if not self.enabled:
            return
        from tensorboardX.proto.event_pb2 import Event
        from tensorboardX.summary import text as text_summary

        def events():
            tb = self._events()
            tb.write_event(Event(wall_time=time.time(), step=int(step), summary=text_summary(tag, text)))
            tb.flush()

        self._guarded(events, os.path.join(self.workdir, "tb"))

    def close(self) -> None:
        if self._tb is not None:
            tb, self._tb = self._tb, None
            try:
                tb.close()
            except OSError:
                pass  # a full disk was reported at the write that hit it
