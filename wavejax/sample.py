"""Generate text from a run: `python -m wavejax.sample --workdir=DIR --prompt=TEXT`.

Loads config.json, tokenizer.json and the best (default) or last checkpoint of a language-model run onto this
machine's first device, whatever mesh trained it. It only reads the run directory: a damaged checkpoint is skipped
for the newest intact one (with a warning) and nothing is created or moved, so it may run beside the training.
"""

from __future__ import annotations

import os
import sys

from wavejax.cli import exit_on_early_interrupt, finish, report_failures
from wavejax.errors import EXIT_BAD_INPUT, ConfigError, RunDirError, display_path

if __name__ == "__main__":
    exit_on_early_interrupt("interrupted.")  # sampling writes nothing: Ctrl-C may end it at any moment


def load_run(workdir: str, which: str = "best"):
    """Returns (config, tokenizer, model, params) of a finished or running language-model run."""
    # Late imports here and in main(): JAX loads after the flags are checked, so a bad flag is reported at once.
    import jax
    import ml_collections

    from wavejax.data.tokenizers import load_tokenizer
    from wavejax.models.gpt import build_model
    from wavejax.rundir import RunDir
    from wavejax.train.checkpoint import Checkpointer
    from wavejax.train.optim import make_optimizer
    from wavejax.train.state import create_train_state

    shown = display_path(workdir)
    if not os.path.isdir(workdir):
        what = "is a file" if os.path.exists(workdir) else "does not exist"
        raise RunDirError(f"--workdir {shown} {what}; pass the folder of a wavejax training run.")
    saved = RunDir(workdir, "lm").saved_config()
    if saved is None:
        raise RunDirError(f"{shown} has no config.json; pass the --workdir of a wavejax training run.")
    task = saved.get("task", "lm")
    if task != "lm":
        hint = (" (a memory run writes its samples to samples.txt; rerun its config with "
                "--config.eval.sample_prompt=TEXT to continue a prompt)" if task == "memory" else "")
        raise RunDirError(f"{shown} holds a {task!r} run; wavejax.sample reads language-model runs{hint}.")
    config = ml_collections.ConfigDict(saved)
    tokenizer = load_tokenizer(workdir)
    try:
        model = build_model(config.model, tokenizer.vocab_size)
        tx, _ = make_optimizer(config.train)
        like = jax.eval_shape(lambda: create_train_state(model, tx, config.seed, config.model.block_size))
    except (AttributeError, KeyError, TypeError, ValueError) as e:
        raise RunDirError(f"{display_path(os.path.join(workdir, 'config.json'))} does not describe a model this "
                          f"version of wavejax can build ({str(e).splitlines()[0][:100]}); use the version that "
                          "wrote it.") from None
    ckpt = Checkpointer(workdir, read_only=True)
    try:
        device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
        state, _, _ = ckpt.restore(like, which=which, sharding=device)
    finally:
        ckpt.close()
    return config, tokenizer, model, state.params


def main(argv=None) -> int:
    from absl import flags

    flags.DEFINE_string("workdir", None, "run directory written by wavejax.main")
    flags.DEFINE_string("prompt", "\n", "text to continue")
    flags.DEFINE_integer("max_new_tokens", 500, "tokens to generate")
    flags.DEFINE_float("temperature", 0.8, "softmax temperature (> 0)")
    flags.DEFINE_integer("top_k", 200, "sample from the k most likely tokens (0 = all)")
    flags.DEFINE_integer("seed", 0, "sampling seed")
    flags.DEFINE_integer("num_samples", 1, "independent samples to print")
    flags.DEFINE_enum("checkpoint", "best", ["best", "last"], "which checkpoint to load (the other is the fallback)")
    F = flags.FLAGS
    try:
        F(list(sys.argv if argv is None else argv))
    except flags.Error as e:
        finish(str(e).splitlines()[0], EXIT_BAD_INPUT)
    if not F.workdir:
        finish("--workdir is required: the folder of a wavejax training run.", EXIT_BAD_INPUT)
    if F.temperature <= 0 or F.max_new_tokens < 1 or F.top_k < 0 or F.num_samples < 1:
        finish("--temperature must be > 0, --max_new_tokens >= 1, --top_k >= 0 and --num_samples >= 1.",
               EXIT_BAD_INPUT)

    def body() -> int:
        import jax

        from wavejax.models.generate import generate

        config, tokenizer, model, params = load_run(F.workdir, F.checkpoint)
        prompt = tokenizer.encode(F.prompt)
        if len(prompt) == 0:
            raise ConfigError("the prompt is empty; pass at least one character with --prompt.")
        top_k = min(F.top_k, tokenizer.vocab_size)
        for i in range(F.num_samples):
            ids = generate(model, params, prompt, F.max_new_tokens, jax.random.PRNGKey(F.seed + i),
                           config.model.block_size, F.temperature, top_k)
            print(tokenizer.decode(ids.tolist()), flush=True)
            if i + 1 < F.num_samples:
                print("---------------")
        return 0

    return report_failures(body, "interrupted.")


if __name__ == "__main__":
    sys.exit(main())
