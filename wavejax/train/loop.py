"""The training loop: data, jitted steps on the mesh, logging, evaluation, checkpoints, resume.

Everything a run needs to be understood and resumed lives in its workdir: config.json,
tokenizer.json, metrics.jsonl, tb/, checkpoints/{last,best}/, samples.txt. Rerunning with the
same workdir resumes from the last checkpoint and reproduces the losses of an uninterrupted run.
"""

from __future__ import annotations

import math
import os
import time

import jax
import ml_collections
import numpy as np
from tqdm.auto import tqdm

from wavejax import parallel
from wavejax.analysis.flops import count_params
from wavejax.analysis.reports import REPORTERS, ReportContext
from wavejax.data import prepare_lm_data, tokenizers
from wavejax.errors import (
    CheckpointError,
    ConfigError,
    DataError,
    StorageError,
    TrainingDiverged,
    display_path,
    storage_error,
)
from wavejax.models.generate import generate
from wavejax.models.gpt import build_model
from wavejax.rundir import RunDir, check_interrupted
from wavejax.runlog import SAMPLES_FILE, MetricWriter, drop_metrics_after, drop_samples_after
from wavejax.train.checkpoint import Checkpointer
from wavejax.train.optim import make_optimizer
from wavejax.train.state import create_train_state, init_boxed_params
from wavejax.train.step import make_eval_step, make_train_step

# Sections that must match for a checkpoint to be resumed; train.* (steps, eval cadence) may change.
FIXED_SECTIONS = ("data", "model")


def scalar_diagnostics(diag: dict) -> dict:
    """{"seg1_0/attn/R_tokens": [H]} -> {"seg1_0/attn/R_tokens": mean, "seg1_0/attn/R_tokens/0": head 0, ...} for the logs."""
    out = {}
    for name, value in diag.items():
        value = np.asarray(value, dtype=np.float64)
        out[name] = float(value.mean())
        if value.size > 1:
            for idx in np.ndindex(value.shape):
                out[f"{name}/{'_'.join(map(str, idx))}"] = float(value[idx])
    return out


class Trainer:
    """Builds everything for an LM run; `run()` trains to config.train.steps and returns a summary."""

    def __init__(self, config: ml_collections.ConfigDict, workdir: str, devices=None):
        """config: a validated config (wavejax.config.validate; the CLI validates once, before any task starts).
        devices: the devices the mesh is built from (default all; tests pass subsets). Holds the run directory's
        lock from here until close()."""
        self.config = config
        self.workdir = workdir
        self.rundir = RunDir(workdir, "lm", FIXED_SECTIONS)
        resuming = self.rundir.check(config)
        self.mesh = parallel.make_mesh(config.mesh, devices)
        dp = parallel.mesh.data_parallel_size(self.mesh)
        micro = config.train.batch_size // config.train.grad_accum
        if micro % dp:
            raise ConfigError(f"the micro-batch ({micro}) must divide over the {dp} data-parallel devices; change train.batch_size or mesh.")

        has_tok = resuming and os.path.exists(os.path.join(workdir, tokenizers.TOKENIZER_FILE))
        self.data = prepare_lm_data(config, tokenizer=tokenizers.load_tokenizer(workdir) if has_tok else None)
        self.sample_prompt = self._sample_prompt()
        # Nothing is written to the workdir before config and data have passed every check.
        self.rundir.acquire(config, jax.process_index())
        try:
            self._build(config, workdir, has_tok, micro)
        except BaseException:
            self.close()
            raise

    def _sample_prompt(self) -> np.ndarray:
        """The ids of train.sample_prompt, checked before any work (a corpus without the prompt's characters would
        otherwise fail at the first evaluation)."""
        t = self.config.train
        if not t.sample_tokens:
            return np.zeros(1, np.int32)
        try:
            prompt = self.data.tokenizer.encode(t.sample_prompt) if t.sample_prompt else np.zeros(0, np.int32)
        except DataError:
            raise ConfigError(f"train.sample_prompt {t.sample_prompt!r} has characters that are not in the corpus's "
                              "vocabulary; set --config.train.sample_prompt to text from the corpus, or "
                              "--config.train.sample_tokens=0.") from None
        return prompt if len(prompt) else np.zeros(1, np.int32)

    def _build(self, config, workdir: str, has_tok: bool, micro: int) -> None:
        if not has_tok and jax.process_index() == 0 and not self.rundir.read_only:
            tokenizers.save_tokenizer(self.data.tokenizer, workdir)  # files in the run dir: process 0 only

        self.model = build_model(config.model, self.data.vocab_size)
        self.synthetic = config.data.dataset == "synthetic"  # targets -1 where nothing is scored
        self.tx, self.lr = make_optimizer(config.train)
        self.rep = parallel.replicated(self.mesh)
        self.batch_sharding = parallel.batch_sharding(self.mesh)
        self.accum_sharding = jax.sharding.NamedSharding(self.mesh, jax.sharding.PartitionSpec(None, parallel.mesh.BATCH_AXES))

        make_state = lambda: create_train_state(self.model, self.tx, config.seed, config.model.block_size)  # noqa: E731
        # Parameters and optimizer state are laid out by the logical-axis rules (FSDP over "fsdp", tensor parallel
        # over "model"); the steps are jitted with these shardings as explicit in/out shardings.
        names = parallel.param_names(jax.eval_shape(lambda: init_boxed_params(self.model, config.seed,
                                                                              config.model.block_size)))
        self.state_sharding = parallel.state_shardings(jax.eval_shape(make_state), names, self.mesh)
        with parallel.mesh_context(self.mesh):
            self.state = jax.jit(make_state, out_shardings=self.state_sharding)()
        self.n_params = count_params(self.state.params)

        self.train_step = parallel.in_mesh(self.mesh, jax.jit(
            make_train_step(self.model, self.tx, self.lr, config.train, masked=self.synthetic),
            in_shardings=(self.state_sharding, self.accum_sharding, self.accum_sharding),
            out_shardings=(self.state_sharding, self.rep),
            donate_argnums=(0,),
        ))
        self.eval_step = parallel.in_mesh(self.mesh, jax.jit(
            make_eval_step(self.model, masked=self.synthetic), in_shardings=(self.state_sharding.params, self.batch_sharding, self.batch_sharding),
            out_shardings=self.rep,
        ))
        pi, pc = jax.process_index(), jax.process_count()
        t = config.train
        self.sampler = self.data.sampler(t.batch_size, config.model.block_size, config.seed, pi, pc, "train")
        # Validation batches are fixed: the same eval_batches windows at every evaluation.
        self.val_sampler = self.data.sampler(micro, config.model.block_size, config.seed + 1, pi, pc, "val")
        self.ckpt = Checkpointer(workdir, keep=t.keep_checkpoints, read_only=self.rundir.read_only)
        self.best_val = math.inf
        self.start_step = 0
        self.window = {"sums": {}, "steps": 0}  # the train means being summed for the next log line
        self._maybe_restore()
        self.is_main = pi == 0
        if self.start_step < t.steps and self.rundir.read_only:
            raise StorageError(f"{self.rundir.shown} is on a read-only filesystem and the run has steps left; pass a "
                               "--workdir on a writable disk.")
        if self.is_main and self.start_step < t.steps:
            drop_metrics_after(workdir, self.start_step)
            drop_samples_after(workdir, self.start_step)
        self.writer = MetricWriter(workdir, resume_step=self.start_step)

    def close(self) -> None:
        """Waits for checkpoint writes, closes the managers and releases the run directory."""
        try:
            if getattr(self, "ckpt", None) is not None:
                try:
                    self.ckpt.wait()
                finally:
                    self.ckpt.close()
        finally:
            self.rundir.release()

    # -- checkpoints -------------------------------------------------------------------------
    def _meta(self) -> dict:
        return {"sampler": self.sampler.state(), "best_val": self.best_val if math.isfinite(self.best_val) else None,
                "vocab_size": self.data.vocab_size,
                "window": {"sums": dict(self.window["sums"]), "steps": self.window["steps"]}}  # a copy: saves are async

    def _maybe_restore(self) -> None:
        if not self.ckpt.steps("last") and not self.ckpt.steps("best"):
            return
        self.state, meta, _ = self.ckpt.restore(self.state)
        if meta.get("vocab_size") != self.data.vocab_size:
            raise CheckpointError(f"the checkpoint in {self.workdir} was trained with another vocabulary; use a new --workdir.")
        self.sampler.restore(meta["sampler"])
        self.best_val = meta["best_val"] if meta.get("best_val") is not None else math.inf
        self.window = meta.get("window", self.window)
        self.start_step = int(self.state.step)

    def save(self, best: bool = False) -> None:
        self.ckpt.save(int(self.state.step), self.state, self._meta(), best=best)

    # -- data --------------------------------------------------------------------------------
    def _put(self, array: np.ndarray, sharding):
        if jax.process_count() == 1:
            return jax.device_put(array, sharding)
        return jax.make_array_from_process_local_data(sharding, array)

    def next_batch(self):
        x, y = next(self.sampler)
        a = self.config.train.grad_accum
        x, y = x.reshape(a, -1, x.shape[-1]), y.reshape(a, -1, y.shape[-1])
        return self._put(x, self.accum_sharding), self._put(y, self.accum_sharding)

    # -- evaluation --------------------------------------------------------------------------
    def eval_batches(self, params=None) -> tuple[np.ndarray, dict]:
        """Loss of each of the eval_batches fixed validation batches, and the diagnostics averaged over them."""
        params = self.state.params if params is None else params
        losses, diags = [], []
        for i in range(self.config.train.eval_batches):
            x, y = self.val_sampler.batch_at(i)
            loss, diag = self.eval_step(params, self._put(x, self.batch_sharding), self._put(y, self.batch_sharding))
            if jax.device_count() > 1:
                loss.block_until_ready()  # fake CPU devices deadlock on un-blocked collectives
            losses.append(loss)
            diags.append(diag)
        losses, diags = jax.device_get((losses, diags))
        mean_diag = {k: np.mean([d[k] for d in diags], axis=0) for k in diags[0]} if diags else {}
        return np.asarray(losses, dtype=np.float64), mean_diag

    def eval_losses(self, params=None) -> np.ndarray:
        return self.eval_batches(params)[0]

    def evaluate(self, params=None) -> float:
        return float(self.eval_losses(params).mean())

    def sample_text(self, step: int) -> str:
        ids = generate(self.model, self.state.params, self.sample_prompt, self.config.train.sample_tokens,
                       jax.random.PRNGKey(step), self.config.model.block_size)
        return self.data.tokenizer.decode(np.asarray(ids))

    # -- the loop ----------------------------------------------------------------------------
    def _log(self, msg: str) -> None:
        if self.is_main:
            tqdm.write(msg)

    def run(self, stop_at: int | None = None) -> dict:
        """Trains to train.steps (or stops after `stop_at`, as a killed run would, for tests)."""
        c, t = self.config, self.config.train
        tokens_per_step = t.batch_size * c.model.block_size
        self._log(f"wavejax: {c.model.family} model, {self.n_params:,} parameters, vocab {self.data.vocab_size}, "
                  f"{self.data.describe()}, mesh {dict(self.mesh.shape)}")
        if self.start_step:
            self._log(f"resumed from step {self.start_step} in {self.workdir}")
        if self.start_step >= t.steps:
            self._log(f"nothing to do: the run is at step {self.start_step} and train.steps is {t.steps}")
        sync_every_step = jax.default_backend() == "cpu" or jax.device_count() > 1
        bar = tqdm(total=t.steps, initial=self.start_step, disable=None if (t.progress and self.is_main) else True,  # None: off when not a TTY
                   unit="step", dynamic_ncols=True, smoothing=0.1)
        window_t0, timed_steps = time.perf_counter(), 0  # throughput: steps since the clock was last reset
        sums = self.window["sums"]  # the train means: resumed with the checkpoint, so resumed logs are exact
        last_val = last_accuracy = None
        pending = None  # (step, metrics) not yet checked: one step of lag keeps the device busy on GPU
        step = self.start_step
        finished = False
        try:
            while step < t.steps:
                check_interrupted()
                x, y = self.next_batch()
                self.state, metrics = self.train_step(self.state, x, y)
                step += 1
                if pending is not None:
                    self._check(*pending, sums)
                pending = (step, metrics)
                if sync_every_step:
                    self._check(*pending, sums)
                    pending = None
                timed_steps += 1
                bar.update(1)
                is_last = step == t.steps
                logs, evals = step % t.log_every == 0 or is_last, step % t.eval_every == 0 or is_last
                saves = step % t.checkpoint_every == 0 or is_last
                if pending is not None and (logs or evals or saves):
                    self._check(*pending, sums)
                    pending = None
                if logs or evals:
                    dt = time.perf_counter() - window_t0
                    means = {k: v / max(self.window["steps"], 1) for k, v in sums.items()}
                    means["tokens_per_s"] = timed_steps * tokens_per_step / max(dt, 1e-9)
                    self.writer.write(step, "train", means)
                    bar.set_postfix(loss=f"{means['loss']:.4f}", tok_s=f"{means['tokens_per_s']:,.0f}")
                    sums.clear()
                    self.window["steps"] = timed_steps = 0
                if evals:
                    last_val, last_accuracy = self._evaluate_and_log(step)
                if saves:
                    self.save()
                if is_last:
                    self._report(step)
                if logs or evals:
                    window_t0 = time.perf_counter()  # eval and checkpoint time is not training throughput
                if stop_at is not None and step >= stop_at:
                    break
            finished = True
        finally:
            bar.close()
            try:
                self.ckpt.wait()
            except StorageError:
                if finished:
                    raise  # else the error already in flight is the one to report
            self.writer.close()
        if last_val is None:
            val_losses, val_diag = self.eval_batches()
            last_val, last_accuracy = float(val_losses.mean()), scalar_diagnostics(val_diag).get("accuracy")
        summary = {"step": step, "val_loss": last_val, "best_val_loss": self.best_val, "params": self.n_params,
                   "workdir": self.workdir}
        if self.synthetic:
            summary["val_accuracy"] = last_accuracy
        return summary

    def _evaluate_and_log(self, step: int) -> tuple[float, float | None]:
        """The evaluation at `step`: logged, the best checkpoint saved when it improves, a sample written. Returns the
        validation loss and (synthetic tasks) the accuracy on the answer positions."""
        val_losses, val_diag = self.eval_batches()
        val = float(val_losses.mean())
        if not math.isfinite(val):
            self._diverged(step, f"validation loss is {val}")
        scalars = scalar_diagnostics(val_diag)
        self.writer.write(step, "val", {"loss": val, **scalars})
        accuracy = scalars.get("accuracy")
        self._log(f"step {step}: val loss {val:.4f}" + (f", accuracy {accuracy:.4f}" if accuracy is not None else ""))
        if val < self.best_val:
            self.best_val = val
            self.save(best=True)
        if self.config.train.sample_tokens:
            self._write_sample(step)
        return val, accuracy

    def _check(self, step: int, metrics, sums: dict) -> None:
        m = jax.device_get(metrics)
        if not bool(m["finite"]):
            self._diverged(step, f"the loss, gradient or updated parameters are not finite (loss={float(m['loss'])}, "
                                 f"grad_norm={float(m['grad_norm'])})")
        for k, v in {**{k: m[k] for k in ("loss", "aux_loss", "grad_norm", "lr")}, **scalar_diagnostics(m["diagnostics"])}.items():
            sums[k] = sums.get(k, 0.0) + float(v)
        self.window["steps"] += 1

    def _diverged(self, step: int, what: str) -> None:
        last = self.ckpt.latest_step()
        kept = f"the last good checkpoint (step {last}) is kept" if last is not None else "no checkpoint had been written yet"
        raise TrainingDiverged(f"step {step}: {what}; the run stopped and {kept}; lower train.lr or check the data.")

    def _report(self, step: int) -> None:
        """The model family's end-of-run report (wavejax.analysis.reports), if it registered one."""
        reporter = REPORTERS.get(self.config.model.family)
        if reporter is None or not self.is_main:
            return
        ctx = ReportContext(self.model, self.state.params, self.config, self.data, self.workdir, step,
                            jax.random.PRNGKey(self.config.seed))
        numbers = reporter(ctx)
        self.writer.write(step, "report", numbers)
        self._log(f"step {step}: report " + ", ".join(f"{k} {v:.4g}" for k, v in numbers.items()))

    def _write_sample(self, step: int) -> None:
        if not self.is_main:
            return
        text = self.sample_text(step)
        path = os.path.join(self.workdir, SAMPLES_FILE)
        try:
            with open(path, "a", encoding="utf-8") as f:
                f.write(f"=== step {step} ===\n{text}\n\n")
        except OSError as e:
            raise storage_error(e, display_path(path)) from None
        self.writer.text(step, "sample", text)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
    trainer = Trainer(config, workdir)
    try:
        summary = trainer.run()
    finally:
        trainer.close()
    accuracy = f", accuracy {summary['val_accuracy']:.4f}" if "val_accuracy" in summary else ""
    summary["message"] = (f"step {summary['step']}, val loss {summary['val_loss']:.4f} (best {summary['best_val_loss']:.4f})"
                          f"{accuracy}, checkpoints in {os.path.join(workdir, 'checkpoints')}")
    return summary


run_task = train_and_evaluate  # the entry point wavejax.main dispatches to for task "lm"

