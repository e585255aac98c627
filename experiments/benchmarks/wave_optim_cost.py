"""Cost of one optimizer update of the wave optimizers against AdamW, on the parameters of real Wave-Native models.

    python -m experiments.benchmarks.wave_optim_cost                       # [B] model at V=1024, [K] at V=1024
    python -m experiments.benchmarks.wave_optim_cost --vocabs 1024,50257 --repeats 3  # also the FineWeb vocabulary
    python -m experiments.benchmarks.wave_optim_cost --configs tiny --vocabs 65 --repeats 2  # a smoke test
    python -m experiments.benchmarks.wave_optim_cost --openblas_threads 1  # single-threaded LAPACK (see below)

For each model (configs/wave.py with the preset of --configs, parameters from jax.eval_shape, filled with N(0, 0.02)
and gradients N(0, 1e-3)) and each vocabulary size, the jitted `tx.update` of adamw, resonant (RGD: FFT gating of
every >=2-D parameter) and wave_native (thin SVD of every matrix per layer) is timed alone: the first call
(compilation) is not timed, each call is waited for, the median of --repeats calls is reported with its ratio to
AdamW measured in the same process. The last column is the time of the SVD projection of the embedding table
(V x d) alone: the part of wave_native that grows with the vocabulary.

On CPU, jax's SVD calls scipy's OpenBLAS LAPACK, whose threads compete with XLA's own thread pool; on a busy
machine that is very slow. --openblas_threads N sets OPENBLAS_NUM_THREADS before jax loads LAPACK (0 leaves the
environment as it is).
"""

from __future__ import annotations

import argparse
import os
import sys

from experiments import common as C

OPTIMIZERS = ("adamw", "resonant", "wave_native")


def timed(fn, args, repeats: int) -> float:
    """Median ms of `repeats` calls of fn(*args) after one untimed call (compilation), each call waited for."""
    import jax

    return C.median_seconds(lambda: jax.block_until_ready(fn(*args)), repeats) * 1000


def measure(preset: str | None, vocab: int, repeats: int) -> dict:
    import jax
    import jax.numpy as jnp
    import numpy as np

    from wavejax.analysis.flops import count_params
    from wavejax.models import wave_optim
    from wavejax.models.gpt import build_model
    from wavejax.train import optim

    config = C.load_config("wave", preset)
    model = build_model(config.model, vocab)
    from flax.core.meta import unbox
    shapes = unbox(jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), jnp.zeros((1, 8), jnp.int32), True))["params"])
    rng = np.random.default_rng(0)
    params = jax.tree.map(lambda s: jnp.asarray(0.02 * rng.standard_normal(s.shape), s.dtype), shapes)
    grads = jax.tree.map(lambda s: jnp.asarray(1e-3 * rng.standard_normal(s.shape), s.dtype), shapes)
    out = {"model": f"wave:{preset}" if preset else "wave", "vocab": vocab, "params": count_params(shapes)}
    for name in OPTIMIZERS:
        config.train.optimizer = name
        tx, _ = optim.make_optimizer(config.train)
        state = tx.init(params)
        out[name] = timed(jax.jit(tx.update), (grads, state, params), repeats)
    table = params["embed"]["simple_table"]["embedding"]
    out["svd_table"] = timed(jax.jit(wave_optim.coherent_projection), (table, table), repeats)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--configs", default=",physics", help="configs/wave.py presets ('' = the [B] default)")
    ap.add_argument("--vocabs", default="1024")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--openblas_threads", type=int, default=0, help="OPENBLAS_NUM_THREADS for LAPACK (0 = as is)")
    args = ap.parse_args(sys.argv[1:] if argv is None else argv)
    try:
        vocabs = [int(v) for v in args.vocabs.split(",")]
    except ValueError:
        C.fail(f"--vocabs takes comma-separated integers, got {args.vocabs!r}.")
    if args.repeats < 1 or min(vocabs) < 2 or args.openblas_threads < 0:
        C.fail("--repeats must be >= 1, every vocabulary >= 2 and --openblas_threads >= 0.")
    if args.openblas_threads:
        os.environ["OPENBLAS_NUM_THREADS"] = str(args.openblas_threads)  # read when LAPACK is first loaded

    import jax

    print(f"wave_optim_cost: {jax.devices()[0].device_kind} ({jax.default_backend()}), load average "
          f"{os.getloadavg()[0]:.2f}, OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', 'unset')}",
          flush=True)
    rows = []
    for preset in [p.strip() or None for p in args.configs.split(",")]:
        for vocab in vocabs:
            r = measure(preset, vocab, args.repeats)
            print(f"  {r['model']} V={vocab}: " + ", ".join(f"{n} {r[n]:.1f} ms" for n in OPTIMIZERS), flush=True)
            rows.append([r["model"], f"{vocab:,}", f"{r['params']:,}"]
                        + [f"{r[n]:.1f} ({r[n] / r['adamw']:.1f}×)" for n in OPTIMIZERS] + [f"{r['svd_table']:.1f}"])
    print()
    print(C.markdown_table(["model", "V", "params"] + [f"{n} ms (× adamw)" for n in OPTIMIZERS]
                           + ["SVD of the V×d table, ms"], rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
