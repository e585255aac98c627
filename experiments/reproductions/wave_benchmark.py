"""The Wave-Native GPT's published comparison next to a fair one, from one command (spec §11.1, §12, §15).

    python -m experiments.reproductions.wave_benchmark  # full size (a GPU): 5k / 15k steps
    python -m experiments.reproductions.wave_benchmark --preset cpu --classic_steps 400 --out runs/wave_benchmark_cpu
    python -m experiments.reproductions.wave_benchmark --preset tiny --classic_steps 4 --seeds 2 --score_batches 2 \
        --out /tmp/wb

Published protocol (the benchmark behind "classic 1.1435 / wave 0.8877"): the classic baseline (configs/wave.py
`classic`: GPT trunk, AdamW 3e-4, CE) trains --classic_steps steps and the [B] wave model (RGD 6e-4 + QFE) trains
--multiple (3) times as many, one run each (the original set no seed; here seed 0); each is scored, as published,
by the cross-entropy of ONE batch drawn from the TRAINING split after the last step. The table also gives, for the
same final parameters, the spread of that one-batch score over --score_batches train batches, the mean over them,
and the loss on the held-out validation split.

Fair protocol: the classic, the wave model as published (RGD + QFE) and the wave model trained like the classic
(`adamw`: AdamW 3e-4, CE) all train on the same number of tokens (the wave model's published budget), with
--seeds seeds each, scored on the held-out validation split (the mean over the run's fixed validation batches);
this is experiments/reproductions/compare.py, whose table, per-seed numbers and loss curves land in OUT/fair/. The published
wave run is the fair protocol's seed-0 wave run (same config, same steps), trained once.

--preset is applied to every config (e.g. `cpu` for the CPU scale, `tiny` for the tests); runs are resumable:
rerunning the same command reuses finished runs. Outputs: OUT/results.md (both tables), OUT/results.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from experiments import common as C
from experiments.reproductions import compare
from wavejax.errors import ConfigError, WavejaxError

FAIR = {  # label -> preset (joined with --preset)
    "classic (AdamW, CE)": "classic",
    "wave [B] as published (RGD + QFE)": "",
    "wave [B] trained like classic (AdamW, CE)": "adamw",
}
SCORE_SEED = 12345  # the train batches of the one-batch score


def preset(base: str, extra: str) -> str | None:
    return "+".join(p for p in (base, extra) if p) or None


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="", help="configs/wave.py preset applied to every config (cpu, tiny, ...)")
    ap.add_argument("--classic_steps", type=int, default=5000, help="steps of the published classic run")
    ap.add_argument("--multiple", type=int, default=3, help="wave steps = multiple x classic steps (published: 3)")
    ap.add_argument("--seeds", default="3", help="seeds of the fair protocol: a count or a list")
    ap.add_argument("--score_batches", type=int, default=50, help="train batches for the spread of one-batch scores")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override for every config")
    ap.add_argument("--out", default="runs/wave_benchmark")
    C.add_results_arg(ap, "wave_benchmark")
    return ap.parse_args(argv)


# -- published protocol ----------------------------------------------------------------------------------------------

def published_runs(args) -> list[dict]:
    """The two published runs as compare.py entries: classic N steps in OUT/published, wave M N steps in OUT/fair."""
    wave_steps = args.multiple * args.classic_steps
    out = []
    for label, extra, steps, root in (("classic (AdamW, CE)", "classic", args.classic_steps, "published"),
                                      ("wave [B] (RGD + QFE)", "", wave_steps, "fair")):
        arg = preset(args.preset, extra)
        config = compare.build_run_config("wave", arg, args.set, 0, steps)
        workdir = os.path.join(args.out, root, "runs", C.run_name("wave", arg, 0))
        out.append({"entry": {"label": label, "name": "wave", "arg": arg, "steps": steps},
                    "run": {"seed": 0, "workdir": workdir, "config": C.config_json(config)}, "config": config})
    return out


def score(workdir: str, n_batches: int) -> dict:
    """The published score (CE of one train batch) and what the same parameters give on more data."""
    import jax
    import numpy as np

    from wavejax.data import BatchSampler, prepare_lm_data
    from wavejax.nn.objectives import cross_entropy
    from wavejax.sample import load_run

    config, tokenizer, model, params = load_run(workdir, "last")
    data = prepare_lm_data(config, tokenizer=tokenizer)
    batch, block = config.train.batch_size, config.model.block_size
    ce = jax.jit(lambda p, x, y: cross_entropy(model.apply({"params": p}, x, True), y))
    train = BatchSampler(data.train, batch, block, SCORE_SEED, split="train")
    val = BatchSampler(data.val, batch, block, config.seed + 1, split="val")  # the run's own validation batches
    train_losses = np.array([float(ce(params, *train.batch_at(i))) for i in range(n_batches)])
    val_losses = np.array([float(ce(params, *val.batch_at(i))) for i in range(config.train.eval_batches)])
    return {"one_batch": float(train_losses[0]), "train_mean": float(train_losses.mean()),
            "train_std": float(train_losses.std(ddof=1)) if n_batches > 1 else None,
            "val_mean": float(val_losses.mean()), "train_tokens": int(len(data.train))}


def published_table(rows: list[dict]) -> str:
    headers = ["model", "params", "steps", "tokens", "epochs", "score: CE of 1 train batch (published 'val_loss')",
               "ppl", "1-batch score spread (std)", "train CE, mean of batches", "held-out val CE"]
    body = []
    for r in rows:
        s = r["score"]
        body.append([r["label"], f"{r['params']:,}", f"{r['steps']:,}", f"{r['tokens']:,}",
                     f"{r['tokens'] / s['train_tokens']:.2f}", f"**{s['one_batch']:.4f}**",
                     f"{2.718281828459045 ** s['one_batch']:.2f}",
                     "n/a" if s["train_std"] is None else f"{s['train_std']:.4f}", f"{s['train_mean']:.4f}",
                     f"{s['val_mean']:.4f}"])
    return C.markdown_table(headers, body)


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    try:
        if args.classic_steps < 1 or args.multiple < 1 or args.score_batches < 1:
            raise ConfigError("--classic_steps, --multiple and --score_batches must be >= 1.")
        pub = published_runs(args)
        from wavejax.config import validate

        for p in pub:
            validate(p["config"])
        seeds = compare.parse_seeds(args.seeds)
    except WavejaxError as e:
        C.fail(str(e), e.exit_code)

    from tqdm.auto import tqdm

    wave_steps = args.multiple * args.classic_steps
    bar = tqdm(total=len(pub), unit="run", desc="published", disable=None)
    results = []
    for p in pub:
        got = compare.launch(p["entry"], p["run"], args.set, bar)
        if "error" in got:
            C.fail(f"{p['entry']['label']}: {got['error']}", 1)
        tqdm.write(f"{p['entry']['label']}: {p['entry']['steps']:,} steps, final val {got['val_loss']:.4f}")
        results.append({"label": p["entry"]["label"], "steps": got["steps"], "tokens": got["tokens"],
                        "params": got["params"], "score": score(p["run"]["workdir"], args.score_batches)})
        bar.update(1)
    bar.close()
    pub_text = published_table(results)
    print("\n" + pub_text + "\n", flush=True)

    specs = [f"wave:{preset(args.preset, extra) or ''}".rstrip(":") for extra in FAIR.values()]
    fair_argv = ["--configs", ",".join(specs), "--seeds", ",".join(map(str, seeds)) + ",",  # a list, even of one
                 "--steps", str(wave_steps), "--out", os.path.join(args.out, "fair")]
    for s in args.set:
        fair_argv += ["--set", s]
    # compare.py's first config is the classic: its Δ column is "minus the classic"
    code = compare.main(fair_argv)
    with open(os.path.join(args.out, "fair", "results.json"), encoding="utf-8") as f:
        fair = json.load(f)
    labels = dict(zip(specs, FAIR))
    fair_text = compare.table([{**c, "label": labels.get(c["label"], c["label"])} for c in fair["configs"]])

    c_pub, w_pub = results[0]["score"]["one_batch"], results[1]["score"]["one_batch"]
    lines = [
        "# Wave-Native GPT: the published comparison and a fair one", "",
        f"Command: `python -m experiments.reproductions.wave_benchmark {' '.join(argv)}`; device {fair['device']}.", "",
        f"## Published protocol: classic {args.classic_steps:,} steps, wave {wave_steps:,} steps, "
        "each scored on ONE training batch", "",
        pub_text, "",
        f"One-batch scores: classic {c_pub:.4f}, wave {w_pub:.4f}: the wave model is "
        f"{100 * (c_pub - w_pub) / c_pub:+.1f}% lower in the published style (published: 1.1435 vs 0.8877, 22.4%).",
        "", f"## Fair protocol: equal tokens ({fair['tokens']:,} each), held-out validation, seeds "
        f"{', '.join(map(str, fair['seeds']))}", "",
        fair_text, "",
        "val loss: mean over the run's fixed validation batches after the last step (mean ± sample std over seeds); "
        "Δ val: minus the classic's, ± its standard error. Loss curves: fair/loss_curves.png.", "",
    ]
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "results.md"), "w", encoding="utf-8") as f:
        f.write("\n".join(lines))
    with open(os.path.join(args.out, "results.json"), "w", encoding="utf-8") as f:
        json.dump({"argv": argv, "published": results, "fair": fair}, f, indent=2)
    print("\n".join(lines))
    print(f"wrote {os.path.join(args.out, 'results.md')}")
    if code == 0:
        C.write_results(args.results, "experiments.reproductions.wave_benchmark", argv, {
            "published": [{"label": r["label"], "steps": r["steps"], "tokens": r["tokens"], "params": r["params"],
                           **{k: r["score"][k] for k in ("one_batch", "train_std", "val_mean")}} for r in results],
            "fair": compare.summary(fair, [{**c, "label": labels.get(c["label"], c["label"])} for c in fair["configs"]]),
            "preset": args.preset, "classic_steps": args.classic_steps, "multiple": args.multiple})
    return code


if __name__ == "__main__":
    sys.exit(main())
