"""Fault injection: every failure a user can cause is created here and must end in one `error:` line with the
documented exit code (2 bad input, 4 disk or filesystem, 130 interrupted), no traceback, no hang, and nothing lost or
mixed on disk; recoverable faults must resume to the losses of an uninterrupted run."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from wavejax.runlog import read_metrics

from conftest import REPO, TRAIN_OVERRIDES, assert_one_error_line, override_flags, run_module

TINY = "--config=configs/baseline.py:tiny"
RESUMED = {"train.steps": 12}  # the recovery runs continue the 8-step run to 12 steps


def train(workdir, timeout: float = 300, **extra) -> subprocess.CompletedProcess:
    flags = override_flags({**TRAIN_OVERRIDES, **extra})
    return run_module("wavejax.main", TINY, f"--workdir={workdir}", *flags, timeout=timeout)


def start(workdir, **extra) -> subprocess.Popen:
    flags = override_flags({**TRAIN_OVERRIDES, **extra})
    return subprocess.Popen([sys.executable, "-m", "wavejax.main", TINY, f"--workdir={workdir}", *flags], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ))


def losses(workdir) -> list:
    """Every logged loss with its step and split (throughput and wall time excluded): equal lists mean a resumed
    run logged exactly what an uninterrupted one did."""
    return [(r["step"], r["split"], r.get("loss")) for r in read_metrics(str(workdir))]


def warnings_and_errors(proc) -> list[str]:
    assert "Traceback" not in proc.stderr, proc.stderr
    return [line for line in proc.stderr.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished 8-step run (checkpoints last/4, last/8 and best/8), copied by the tests that damage it."""
    workdir = tmp_path_factory.mktemp("faults") / "run"
    proc = train(workdir)
    assert proc.returncode == 0, proc.stderr
    return workdir


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The losses of an uninterrupted 12-step run."""
    workdir = tmp_path_factory.mktemp("faults") / "reference"
    proc = train(workdir, **RESUMED)
    assert proc.returncode == 0, proc.stderr
    return losses(workdir)


def copy_of(finished, tmp_path):
    workdir = tmp_path / "run"
    shutil.copytree(finished, workdir)
    return workdir


# -- 1. a broken config file ------------------------------------------------------------------------------------------

BROKEN_CONFIGS = {
    "syntax-error": ("def get_config(arg=None)\n    return 1\n", "has a syntax error at line 1"),
    "failing-import": ("import wavejax.no_such_module\n", "cannot be loaded: No module named 'wavejax.no_such_module'"),
    "returns-a-dict": ("def get_config(arg=None):\n    return {'task': 'lm'}\n", "returned a dict, not an ml_collections"),
    "raises": ("def get_config(arg=None):\n    raise ValueError('boom')\n", "get_config() in"),
    "no-get-config": ("x = 1\n", "has no get_config() function"),
    "no-task": ("import ml_collections\ndef get_config(arg=None):\n    return ml_collections.ConfigDict()\n",
                "has no 'task' key"),
}


@pytest.mark.parametrize("case", sorted(BROKEN_CONFIGS))
def test_broken_config_file_is_one_error_line(case, tmp_path):
    text, fragment = BROKEN_CONFIGS[case]
    path = tmp_path / "broken.py"
    path.write_text(text)
    workdir = tmp_path / "run"
    proc = run_module("wavejax.main", f"--config={path}", f"--workdir={workdir}")
    line = assert_one_error_line(proc, 2)
    assert fragment in line and str(path) in line, line
    assert not workdir.exists()


def test_config_that_is_a_folder_is_named(tmp_path):
    proc = run_module("wavejax.main", "--config=configs", f"--workdir={tmp_path / 'run'}")
    assert "config 'configs' is a folder" in assert_one_error_line(proc, 2)


# -- 2. an unusable run directory ---------------------------------------------------------------------------------------

def test_workdir_that_is_a_file_or_under_a_file(tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("x")
    proc = train(afile)
    assert "is a file, not a folder" in assert_one_error_line(proc, 2)
    proc = train(afile / "sub" / "run")
    assert f"cannot be created: {afile} is a file" in assert_one_error_line(proc, 2)
    assert afile.read_text() == "x"


def test_workdir_under_proc_is_refused():
    proc = train("/proc/wavejax-run")
    assert "cannot create the run directory /proc/wavejax-run" in assert_one_error_line(proc, 2)


def _mount_tmpfs(path, size: str, read_only: bool = False) -> None:
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root")
    path.mkdir(parents=True, exist_ok=True)
    opts = f"size={size}" + (",ro" if read_only else "")
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(path)], capture_output=True, text=True)
    if proc.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")


def _umount(path) -> None:
    subprocess.run(["umount", "-l", str(path)], capture_output=True)


def test_read_only_filesystem(finished, tmp_path):
    mnt = tmp_path / "ro"
    _mount_tmpfs(mnt, "16m")
    try:
        shutil.copytree(finished, mnt / "done")
        subprocess.run(["mount", "-o", "remount,ro", str(mnt)], check=True)
        proc = train(mnt / "new")  # a new run cannot be created there
        assert "filesystem is read-only" in assert_one_error_line(proc, 4)
        proc = train(mnt / "done", **RESUMED)  # a run with steps left cannot continue there
        line = assert_one_error_line(proc, 4)
        assert "read-only filesystem and the run has steps left" in line
        proc = train(mnt / "done")  # a finished run has nothing to write: it succeeds
        assert proc.returncode == 0 and "nothing to do: the run is at step 8" in proc.stdout, proc.stderr
        assert not warnings_and_errors(proc)
    finally:
        _umount(mnt)


# -- 3. damaged checkpoints -----------------------------------------------------------------------------------------------

def _largest_data_file(step_dir):
    files = [p for p in step_dir.rglob("*") if p.is_file() and p.parent.name == "d"]
    return max(files, key=lambda p: p.stat().st_size)


def _truncate(step_dir):
    f = _largest_data_file(step_dir)
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 3])


def _garbage(step_dir):
    f = _largest_data_file(step_dir)
    data = bytearray(f.read_bytes())
    data[len(data) // 2: len(data) // 2 + 256] = os.urandom(256)  # same size: orbax itself notices nothing
    f.write_bytes(bytes(data))


def _bad_metadata(step_dir):
    (step_dir / "state" / "_METADATA").write_text("{not json")


def _no_state(step_dir):
    shutil.rmtree(step_dir / "state")


DAMAGES = {"truncated-data": _truncate, "garbage-data": _garbage, "garbage-metadata": _bad_metadata,
           "deleted-state": _no_state}


@pytest.mark.parametrize("damage", sorted(DAMAGES))
def test_damaged_newest_checkpoint_falls_back_and_resumes_exactly(damage, finished, reference, tmp_path):
    workdir = copy_of(finished, tmp_path)
    for which in ("last", "best"):  # both copies of step 8: the intact step 4 of last/ must be used
        DAMAGES[damage](workdir / "checkpoints" / which / "8")
    proc = train(workdir, **RESUMED)
    assert proc.returncode == 0, proc.stderr
    lines = warnings_and_errors(proc)
    assert all(line.startswith("warning: ") for line in lines), lines
    assert any("checkpoint step 8 in" in line and "is damaged" in line for line in lines), lines
    assert any("using checkpoint step 4" in line for line in lines), lines
    assert "resumed from step 4" in proc.stdout
    assert losses(workdir) == reference
    kept = sorted(p.name for p in (workdir / "checkpoints" / "damaged").iterdir())
    assert kept == ["best-8", "last-8"]  # moved aside, not deleted


def test_damaged_last_falls_back_to_best_of_the_same_step(finished, reference, tmp_path):
    workdir = copy_of(finished, tmp_path)
    _truncate(workdir / "checkpoints" / "last" / "8")
    proc = train(workdir, **RESUMED)
    assert proc.returncode == 0, proc.stderr
    assert "resumed from step 8" in proc.stdout and "using checkpoint step 8 from" in proc.stderr
    assert losses(workdir) == reference


def test_every_checkpoint_damaged_is_one_error_line(finished, tmp_path):
    workdir = copy_of(finished, tmp_path)
    for which, step in (("last", "4"), ("last", "8"), ("best", "8")):
        _no_state(workdir / "checkpoints" / which / step)
    proc = train(workdir, **RESUMED)
    line = assert_one_error_line(proc, 2)
    assert "every checkpoint in" in line and "is damaged" in line
    assert (workdir / "checkpoints" / "last" / "8").exists()  # left in place for the user to look at


def test_sample_skips_a_damaged_best_checkpoint_and_writes_nothing(finished, tmp_path):
    workdir = copy_of(finished, tmp_path)
    _garbage(workdir / "checkpoints" / "best" / "8")
    before = sorted(str(p.relative_to(workdir)) for p in workdir.rglob("*"))
    proc = run_module("wavejax.sample", f"--workdir={workdir}", "--prompt=ROMEO:", "--max_new_tokens=8")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("ROMEO:")
    lines = warnings_and_errors(proc)
    assert len(lines) == 2 and "is damaged" in lines[0] and "skipped" in lines[0], lines
    assert sorted(str(p.relative_to(workdir)) for p in workdir.rglob("*")) == before


# -- 4-5. torn and damaged records ---------------------------------------------------------------------------------------

def test_torn_last_metrics_line_is_dropped_and_said(finished, reference, tmp_path):
    workdir = copy_of(finished, tmp_path)
    with open(workdir / "metrics.jsonl", "a", encoding="utf-8") as f:
        f.write('{"step": 9, "split": "tra')  # a write cut short by a crash
    proc = train(workdir, **RESUMED)
    assert proc.returncode == 0, proc.stderr
    assert "dropped 1 unreadable line of" in proc.stderr and "Traceback" not in proc.stderr
    assert losses(workdir) == reference


@pytest.mark.parametrize("name,fragment", [("config.json", "config.json is damaged"),
                                           ("tokenizer.json", "tokenizer.json is damaged")])
def test_garbage_run_files_are_one_error_line(name, fragment, finished, tmp_path):
    workdir = copy_of(finished, tmp_path)
    (workdir / name).write_text("\x00garbage{")
    assert fragment in assert_one_error_line(train(workdir, **RESUMED), 2)
    proc = run_module("wavejax.sample", f"--workdir={workdir}", "--max_new_tokens=4")
    assert fragment in assert_one_error_line(proc, 2)


def test_sample_refuses_a_memory_run_and_a_bad_prompt(finished, tmp_path):
    memory = tmp_path / "memory"
    memory.mkdir()
    (memory / "config.json").write_text(json.dumps({"task": "memory", "seed": 0}))
    proc = run_module("wavejax.sample", f"--workdir={memory}")
    assert "holds a 'memory' run; wavejax.sample reads language-model runs" in assert_one_error_line(proc, 2)
    proc = run_module("wavejax.sample", f"--workdir={finished}", "--prompt=")
    assert "the prompt is empty" in assert_one_error_line(proc, 2)
    proc = run_module("wavejax.sample", f"--workdir={finished / 'config.json'}")
    assert "config.json is a file" in assert_one_error_line(proc, 2)


def test_sample_creates_nothing_in_a_folder_without_checkpoints(finished, tmp_path):
    workdir = tmp_path / "run"
    workdir.mkdir()
    for name in ("config.json", "tokenizer.json"):
        shutil.copy(finished / name, workdir / name)
    proc = run_module("wavejax.sample", f"--workdir={workdir}", "--max_new_tokens=4")
    assert "no checkpoint in" in assert_one_error_line(proc, 2)
    assert sorted(p.name for p in workdir.iterdir()) == ["config.json", "tokenizer.json"]


# -- 6. a corpus the default sample prompt does not fit -----------------------------------------------------------------

def test_corpus_without_the_sample_prompt_is_refused_before_any_work(tmp_path):
    corpus = tmp_path / "one_line.txt"
    corpus.write_text("abcdefgh " * 2000)  # no newline: the default prompt "\n" is not in its vocabulary
    workdir = tmp_path / "run"
    proc = train(workdir, **{"data.dataset": "file", "data.path": str(corpus), "train.sample_tokens": 8})
    assert "train.sample_prompt '\\n' has characters that are not in" in assert_one_error_line(proc, 2)
    assert not workdir.exists()


# -- 7. Ctrl-C ---------------------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_ctrl_c_at_any_moment_is_exit_130_without_traceback(tmp_path):
    """Interrupts while the libraries load, while the config and data load, while the step compiles and while it
    trains; each ends in one line and exit 130 (no segfault in the interpreter's teardown). (A Ctrl-C in Python's
    own start-up, the first ~50 ms before any wavejax code runs, is Python's to report.)"""
    for i, delay in enumerate((0.1, 0.4, 1.2, 3.0, 5.0)):
        workdir = tmp_path / f"run{i}"
        proc = start(workdir, **{"train.steps": 400})
        time.sleep(delay)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
        lines = [line for line in err.splitlines() if line.strip()]
        assert proc.returncode == 130, (delay, proc.returncode, err)
        assert len(lines) == 1 and lines[0].startswith("error: interrupted"), (delay, err)
    target = max([r["step"] for r in read_metrics(str(workdir))], default=0) + 4
    proc = train(workdir, **{"train.steps": target})  # the last one resumes (or starts) cleanly
    assert proc.returncode == 0 and not warnings_and_errors(proc), proc.stderr
    assert [r["step"] for r in read_metrics(str(workdir)) if r["split"] == "train"] == list(range(1, target + 1))


# -- 8. resume is exact when checkpoints fall inside a log window ---------------------------------------------------

@pytest.mark.slow
def test_resume_mid_log_window_logs_what_an_uninterrupted_run_logs(train_config, tmp_path):
    """Checkpoints every 4 steps, logs every 3: a run killed after its step-8 checkpoint resumes with the train sums
    of steps 7-8 and logs at step 9 the mean of 7-9, as the uninterrupted run does."""
    from wavejax.train.loop import Trainer

    from conftest import apply_overrides

    cadence = {"train.log_every": 3, "train.checkpoint_every": 4, "train.eval_every": 6, "train.steps": 12}
    config = apply_overrides(train_config, cadence)
    whole, part = tmp_path / "whole", tmp_path / "part"
    for workdir, stop_at in ((whole, None), (part, 10), (part, None)):  # the second run dies after step 10
        trainer = Trainer(config, str(workdir))
        try:
            trainer.run(stop_at=stop_at)
        finally:
            trainer.close()
    assert losses(part) == losses(whole)
    assert [r["step"] for r in read_metrics(str(part)) if r["split"] == "train"] == [3, 6, 9, 12]


# -- 9. two runs on one folder --------------------------------------------------------------------------------------

@pytest.mark.slow
def test_second_run_on_a_held_folder_is_refused_and_a_stale_lock_is_taken_over(tmp_path):
    workdir = tmp_path / "run"
    first = start(workdir, **{"train.steps": 100000})
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not (workdir / "metrics.jsonl").exists():
            time.sleep(0.2)
        assert first.poll() is None, first.communicate()[1]
        for lr in ("0.001", "0.0005"):  # the same settings, and other ones
            proc = train(workdir, **{"train.lr": lr})
            line = assert_one_error_line(proc, 2)
            assert f"is in use by another run (process {first.pid} on" in line, line
        first.send_signal(signal.SIGKILL)  # dies holding the lock: the lock file still names it
        first.wait(timeout=30)
    finally:
        if first.poll() is None:
            first.kill()
    assert str(first.pid) in (workdir / "run.lock").read_text()
    proc = train(workdir, **{"train.steps": 12})
    assert proc.returncode == 0, proc.stderr
    assert f"left locked by process {first.pid}, which is no longer running" in proc.stderr
    config = json.loads((workdir / "config.json").read_text())
    assert config["train"]["lr"] == 0.001 and config["train"]["steps"] == 12
    assert (workdir / "run.lock").read_text() == ""


# -- 10. a full disk ------------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_full_disk_stops_at_once_and_a_rerun_resumes_exactly(reference, tmp_path):
    mnt = tmp_path / "small"
    _mount_tmpfs(mnt, "2600k")  # room for the run's first checkpoints, not for all of them
    try:
        workdir = mnt / "run"
        t0 = time.time()
        proc = train(workdir, timeout=120, **RESUMED)
        line = assert_one_error_line(proc, 4)
        assert "the disk is full" in line and "is kept" in line, line
        assert time.time() - t0 < 100
        subprocess.run(["mount", "-o", "remount,size=64m", str(mnt)], check=True)  # space freed
        proc = train(workdir, **RESUMED)
        assert proc.returncode == 0, proc.stderr
        assert losses(workdir) == reference
    finally:
        _umount(mnt)


# -- 11. sample on another number of devices ------------------------------------------------------------------------

@pytest.mark.slow
def test_sample_restores_a_run_trained_on_8_devices(tmp_path):
    from conftest import EIGHT

    workdir = tmp_path / "run"
    flags = override_flags({**TRAIN_OVERRIDES, "train.steps": 4, "mesh.data": 1, "mesh.fsdp": 8})
    proc = subprocess.run([sys.executable, "-m", "wavejax.main", TINY, f"--workdir={workdir}", *flags], cwd=REPO,
                          env=dict(os.environ, **EIGHT), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    proc = run_module("wavejax.sample", f"--workdir={workdir}", "--prompt=ROMEO:", "--max_new_tokens=8")
    assert proc.returncode == 0 and proc.stdout.startswith("ROMEO:"), proc.stderr


# -- the memory and field tasks keep the same contract ------------------------------------------------------------------

def test_memory_rerun_reuses_the_store_and_relearns_a_damaged_one(tmp_path):
    workdir = tmp_path / "memory"
    args = ("--config=configs/holographic.py:tiny", f"--workdir={workdir}")
    first = run_module("wavejax.main", *args)
    assert first.returncode == 0, first.stderr
    samples, table = (workdir / "samples.txt").read_text(), (workdir / "eval.md").read_text()
    again = run_module("wavejax.main", *args)
    assert again.returncode == 0 and "restored the memory saved in" in again.stdout, again.stderr
    assert (workdir / "samples.txt").read_text() == samples  # rewritten with the same text, not appended
    _garbage(workdir / "memory")  # the payload's largest data file, overwritten in place
    damaged = run_module("wavejax.main", *args)
    assert damaged.returncode == 0, damaged.stderr
    lines = warnings_and_errors(damaged)
    assert len(lines) == 1 and "differs from the one that was saved; moved it to" in lines[0], lines
    assert (workdir / "memory.damaged").is_dir() and (workdir / "eval.md").read_text() == table
    meta_path = workdir / "memory_meta.json"  # a save of an older layout (format 1: the sorted-hash cache)
    meta_path.write_text(json.dumps({**json.loads(meta_path.read_text()), "format": 1}))
    old = run_module("wavejax.main", *args)
    lines = warnings_and_errors(old)
    assert old.returncode == 0 and len(lines) == 1 and "has format 1 (an older wavejax)" in lines[0], lines
    assert (workdir / "memory.damaged.1").is_dir() and (workdir / "eval.md").read_text() == table


def test_field_rerun_prints_the_finished_table_and_refuses_other_settings(tmp_path):
    workdir = tmp_path / "field"
    args = ("--config=configs/field.py:tiny", f"--workdir={workdir}")
    first = run_module("wavejax.main", *args)
    assert first.returncode == 0, first.stderr
    again = run_module("wavejax.main", *args)
    assert again.returncode == 0 and "(finished earlier; nothing recomputed)" in again.stdout, again.stderr
    other = run_module("wavejax.main", *args, "--config.field.trials=4")
    assert "different field config (field.trials)" in assert_one_error_line(other, 2)
