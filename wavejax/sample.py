"""Generate text from a run: `python -m wavejax.sample --workdir=DIR --prompt=TEXT`.

Loads config.json, tokenizer.json and the best (default) or last checkpoint of the run.
"""

from __future__ import annotations

import json
import os
import sys

from wavejax.errors import CheckpointError, WavejaxError


def load_run(workdir: str, which: str = "best"):
    """Returns (config, tokenizer, model, params) of a finished or running run."""
    import jax
    import ml_collections

    from wavejax.data.tokenizers import load_tokenizer
    from wavejax.models.gpt import build_model
    from wavejax.train.checkpoint import Checkpointer
    from wavejax.train.optim import make_optimizer
    from wavejax.train.state import create_train_state

    path = os.path.join(workdir, "config.json")
    if not os.path.isfile(path):
        raise CheckpointError(f"{workdir} has no config.json; pass the --workdir of a wavejax training run.")
    with open(path, encoding="utf-8") as f:
        config = ml_collections.ConfigDict(json.load(f))
    tokenizer = load_tokenizer(workdir)
    model = build_model(config.model, tokenizer.vocab_size)
    tx, _ = make_optimizer(config.train)
    like = jax.eval_shape(lambda: create_train_state(model, tx, config.seed, config.model.block_size))
    ckpt = Checkpointer(workdir)
    try:
        if which == "best" and ckpt.latest_step("best") is None:
            which = "last"  # a run stopped before its first eval has no best checkpoint yet
        state, _ = ckpt.restore(like, which=which)
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
    flags.DEFINE_enum("checkpoint", "best", ["best", "last"], "which checkpoint to load")
    F = flags.FLAGS
    try:
        F(list(sys.argv if argv is None else argv))
    except flags.Error as e:
        print(f"error: {str(e).splitlines()[0]}", file=sys.stderr)
        return 2
    if not F.workdir:
        print("error: --workdir is required: the folder of a wavejax training run.", file=sys.stderr)
        return 2
    if F.temperature <= 0 or F.max_new_tokens < 1 or F.top_k < 0:
        print("error: --temperature must be > 0, --max_new_tokens >= 1 and --top_k >= 0.", file=sys.stderr)
        return 2
    try:
        import jax

        from wavejax.models.generate import generate

        config, tokenizer, model, params = load_run(F.workdir, F.checkpoint)
        prompt = tokenizer.encode(F.prompt)
        if len(prompt) == 0:
            raise WavejaxError("the prompt is empty after tokenization; pass at least one character with --prompt.")
        top_k = min(F.top_k, tokenizer.vocab_size)
        for i in range(F.num_samples):
            ids = generate(model, params, prompt, F.max_new_tokens, jax.random.PRNGKey(F.seed + i),
                           config.model.block_size, F.temperature, top_k)
            print(tokenizer.decode(ids.tolist()))
            if i + 1 < F.num_samples:
                print("---------------")
    except WavejaxError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
