"""PhaseGPT's Kuramoto dynamics on their own: coherence against coupling K, and the interpretability R of noise.

    python -m experiments.claims.phase_dynamics  # both tables, plot + CSV
    python -m experiments.claims.phase_dynamics --seq 32 --osc 8 --heads 4 --trials 10 --interp_seq 64 --k_step 1

(b) Coherence vs K (spec 1.3 setup): theta^0 = pi*tanh(N(0, theta_std^2)) of shape [B,H,S,O], omega ~
N(0, freq_std^2) of shape [H,O], then T explicit-Euler steps of wavejax.ops.phase.kuramoto_dynamics (the
layer's own integrator) with one coupling K for every head, for each K of the grid, both signs (repulsive =
the original's sin(theta_i - theta_j) with +K, attractive = the textbook equation) and causal False/True.
Reported: the Kuramoto order parameter across tokens (order_parameter_tokens: |mean_j e^{i theta_j}| per
(b,h,o), averaged) and the original's per-token definition (order_parameter_channels: |mean_o e^{i theta}| per
(b,h,s), averaged), at t=0 and t=T, mean ± sample std over --seeds draws of theta^0 and omega. Note that the
dynamics depend only on sign*K, so the repulsive column at K is the attractive column at -K (up to float order).
A plot of R(T) against K (one line per sign x causal) goes to --out and the numbers to the same path with .csv.

(c) The interpretability script's R (order_parameter_interpret: the arithmetic mean of the raw angles over the
H heads, then R_s = |mean_o e^{i phi[s,o]}| per position) of unsynchronised phases, independent Uniform(-pi, pi)
of shape [H,S,O], over --trials draws: per-trial mean, std, min and max over the S positions (averaged over
trials, ± their std across trials), against the original's reported 0.8837 ± 0.0263 (min 0.8096, max 0.9489).
The expectation is computed from the characteristic function of the mean phi of H uniform angles,
E[e^{i phi}] = (sin(pi/H) / (pi/H))^H (checked by Monte Carlo), with the finite-O mean sqrt(1/O + (1-1/O) c^2)
(root of E[R^2], an upper bound by Jensen) and the delta-method std sqrt(Var(cos phi)/O). For contrast: the
true across-token order parameter and the per-token (channels) R of the same phases, and the same statistics
for phases pi*tanh(N(0, sigma^2)) (concentrated near 0, as theta^0 of the layer is).
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import statistics
import sys
import time

from experiments import common as C

COMBOS = [("repulsive", False), ("repulsive", True), ("attractive", False), ("attractive", True)]
REPORTED = {"mean": 0.8837, "std": 0.0263, "min": 0.8096, "max": 0.9489}  # results/interpretability/notes.md


def k_grid(k_min: float, k_max: float, k_step: float) -> list[float]:
    n = int(round((k_max - k_min) / k_step))
    return [round(k_min + i * k_step, 10) for i in range(n + 1)]


def fmt(values, digits: int = 3) -> str:
    """mean ± std of the values at `digits` decimals (the mean alone for one value, n/a for none)."""
    return C.fmt_mean_std(values, f"{{:.{digits}f}}", show_n=False)


# -- (b) coherence against K ----------------------------------------------------------------------

def coherence_sweep(args, ks: list[float]) -> tuple[dict, dict]:
    """{(sign, causal, K): {"tok0": [...], "tokT": [...], "ch0": [...], "chT": [...]}} over seeds, and R at t=0."""
    import jax
    import jax.numpy as jnp

    from wavejax.ops import phase

    shape = (args.batch, args.heads, args.seq, args.osc)

    def metrics(theta):
        return phase.order_parameter_tokens(theta).mean(), phase.order_parameter_channels(theta).mean()

    def run(theta0, omega, k, sign, causal):
        theta = phase.kuramoto_dynamics(theta0, omega[:, None, :], jnp.full((args.heads,), k, jnp.float32),
                                        steps=args.steps, dt=args.dt, sign=phase.SIGNS[sign], causal=causal,
                                        causal_norm=args.causal_norm)
        return metrics(theta)

    run = jax.jit(run, static_argnames=("sign", "causal"))
    metrics = jax.jit(metrics)
    out, start = {}, {"tok0": [], "ch0": []}
    for seed in range(args.seeds):
        k1, k2 = jax.random.split(jax.random.PRNGKey(seed))
        theta0 = math.pi * jnp.tanh(args.theta_std * jax.random.normal(k1, shape, jnp.float32))
        omega = args.freq_std * jax.random.normal(k2, (args.heads, args.osc), jnp.float32)
        tok0, ch0 = (float(v) for v in metrics(theta0))
        start["tok0"].append(tok0)
        start["ch0"].append(ch0)
        for sign, causal in COMBOS:
            for k in ks:
                tok, ch = (float(v) for v in run(theta0, omega, k, sign=sign, causal=causal))
                cell = out.setdefault((sign, causal, k), {"tokT": [], "chT": []})
                cell["tokT"].append(tok)
                cell["chT"].append(ch)
    return out, start


def combo_label(sign: str, causal: bool) -> str:
    return f"{sign}, {'causal' if causal else 'non-causal'}"


def render_sweep(out: dict, start: dict, ks: list[float]) -> str:
    headers = ["K", *(f"R_tok(T) {combo_label(*c)}" for c in COMBOS), *(f"R_ch(T) {combo_label(*c)}" for c in COMBOS)]
    body = [["t = 0 (any K)", *[fmt(start["tok0"])] * 4, *[fmt(start["ch0"])] * 4]]
    for k in ks:
        body.append([f"{k:+.2f}", *(fmt(out[(*c, k)]["tokT"]) for c in COMBOS), *(fmt(out[(*c, k)]["chT"]) for c in COMBOS)])
    return C.markdown_table(headers, body)


def write_csv(path: str, out: dict, start: dict, ks: list[float], args) -> None:
    from wavejax.ops.phase import SIGNS

    m0t, s0t, _ = C.mean_std(start["tok0"])
    m0c, s0c, _ = C.mean_std(start["ch0"])
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["sign", "causal", "K", "sign_times_K", "n_seeds", "R_tokens_0_mean", "R_tokens_0_std", "R_tokens_T_mean",
                    "R_tokens_T_std", "R_channels_0_mean", "R_channels_0_std", "R_channels_T_mean", "R_channels_T_std",
                    "batch", "heads", "seq", "osc", "steps", "dt", "causal_norm"])
        for sign, causal in COMBOS:
            for k in ks:
                cell = out[(sign, causal, k)]
                mt, st, n = C.mean_std(cell["tokT"])
                mc, sc, _ = C.mean_std(cell["chT"])
                w.writerow([sign, causal, k, SIGNS[sign] * k, n, m0t, s0t, mt, st, m0c, s0c, mc, sc, args.batch, args.heads,
                            args.seq, args.osc, args.steps, args.dt, args.causal_norm])


def plot(path: str, out: dict, start: dict, ks: list[float], args) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharex=True)
    styles = {("repulsive", False): ("tab:red", "-"), ("repulsive", True): ("tab:red", "--"),
              ("attractive", False): ("tab:blue", "-"), ("attractive", True): ("tab:blue", "--")}
    for ax, key, key0, title in ((axes[0], "tokT", "tok0", "across tokens (order_parameter_tokens)"),
                                 (axes[1], "chT", "ch0", "per token, across O channels (order_parameter_channels)")):
        for c in COMBOS:
            stats = [C.mean_std(out[(*c, k)][key]) for k in ks]
            ax.errorbar(ks, [s[0] for s in stats], yerr=[s[1] or 0.0 for s in stats], color=styles[c][0],
                        linestyle=styles[c][1], marker="o", markersize=3, capsize=2, label=combo_label(*c))
        ax.axhline(statistics.fmean(start[key0]), color="gray", linestyle=":", label="t = 0")
        ax.set_title(f"R at t = T: {title}", fontsize=9)
        ax.set_xlabel("coupling K")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("order parameter R")
    axes[0].legend(fontsize=8)
    fig.suptitle(f"Kuramoto dynamics: B={args.batch}, H={args.heads}, S={args.seq}, O={args.osc}, T={args.steps}, "
                 f"dt={args.dt}, theta0 = pi tanh(N(0,{args.theta_std}^2)), omega ~ N(0,{args.freq_std}^2), "
                 f"{args.seeds} seeds", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# -- (c) the interpretability R of unsynchronised phases -------------------------------------------

def interpret_null(args) -> list[dict]:
    import jax
    import jax.numpy as jnp

    from wavejax.ops import phase

    shape = (args.interp_heads, args.interp_seq, args.interp_osc)

    @jax.jit
    def stats(theta):
        r = phase.order_parameter_interpret(theta)  # [S]
        tok = phase.order_parameter_tokens(theta[None]).mean()
        ch = phase.order_parameter_channels(theta[None]).mean()
        return jnp.stack([r.mean(), r.std(), r.min(), r.max(), tok, ch]), r

    sources = [("Uniform(-π, π) (unsynchronised)", None)] + [(f"π·tanh(N(0, {s:g}²))", s) for s in args.tanh_sigmas]
    rows = []
    for label, sigma in sources:
        per_trial, pooled = [], []
        for t in range(args.trials):
            key = jax.random.PRNGKey(10_000 + t)
            if sigma is None:
                theta = jax.random.uniform(key, shape, jnp.float32, -math.pi, math.pi)
            else:
                theta = math.pi * jnp.tanh(sigma * jax.random.normal(key, shape, jnp.float32))
            s, r = stats(theta)
            per_trial.append([float(v) for v in s])
            pooled.append(r)
        cols = list(zip(*per_trial))
        allr = jnp.concatenate(pooled)
        rows.append({"phases": label, "trials": args.trials, "mean": cols[0], "std": cols[1], "min": cols[2], "max": cols[3],
                     "tokens": cols[4], "channels": cols[5], "pooled": [float(allr.mean()), float(allr.std()),
                                                                        float(allr.min()), float(allr.max())]})
    return rows


def interpret_expectation(h: int, o: int, mc_draws: int = 1_000_000) -> dict:
    """E[cos phi] for phi = mean of h Uniform(-pi, pi) angles, by the characteristic function and by Monte Carlo."""
    import numpy as np

    def char(t):  # E[e^{i t phi}] = (sin(pi t / h) / (pi t / h))^h: the mean of h iid uniforms on (-pi, pi)
        a = math.pi * t / h
        return (math.sin(a) / a) ** h

    c, c2 = char(1), char(2)
    rng = np.random.default_rng(0)
    phi = rng.uniform(-math.pi, math.pi, size=(mc_draws, h)).mean(axis=1)
    var_cos = (1 + c2) / 2 - c * c  # Var(cos phi); E[sin phi] = 0 by symmetry
    return {"c": c, "c_mc": float(np.cos(phi).mean()), "c_mc_se": float(np.cos(phi).std() / math.sqrt(mc_draws)),
            "r_mean": math.sqrt(1 / o + (1 - 1 / o) * c * c), "r_std": math.sqrt(var_cos / o),
            "phi_std": math.pi / math.sqrt(3 * h)}


def render_interpret(rows: list[dict], expect: dict, args) -> str:
    headers = ["phases [H,S,O]", "trials", "R_s mean", "R_s std over s", "R_s min over s", "R_s max over s",
               "R across tokens", "R per token (channels)"]
    body = [["original, reported (trained layer, 1 random-token sequence)", "1", f"{REPORTED['mean']:.4f}",
             f"{REPORTED['std']:.4f}", f"{REPORTED['min']:.4f}", f"{REPORTED['max']:.4f}", "not reported", "not reported"]]
    for r in rows:
        body.append([r["phases"], str(r["trials"]), fmt(r["mean"], 4), fmt(r["std"], 4), fmt(r["min"], 4), fmt(r["max"], 4),
                     fmt(r["tokens"], 4), fmt(r["channels"], 4)])
    p = rows[0]["pooled"]
    body.append([f"{rows[0]['phases']}, pooled over trials × positions", str(rows[0]["trials"]), f"{p[0]:.4f}",
                 f"{p[1]:.4f}", f"{p[2]:.4f}", f"{p[3]:.4f}", "", ""])
    body.append([f"expectation, uniform: E[cos φ] = (sin(π/H)/(π/H))^H, O→∞ (Monte Carlo {expect['c_mc']:.4f} "
                 f"± {expect['c_mc_se']:.4f})", "—", f"{expect['c']:.4f}", "→ 0", "", "", "", ""])
    body.append([f"expectation, uniform, O={args.interp_osc}: √(1/O + (1−1/O)c²), √(Var(cos φ)/O)", "—",
                 f"{expect['r_mean']:.4f}", f"{expect['r_std']:.4f}", "", "", "", ""])
    return C.markdown_table(headers, body, align="lrrrrrrr")


def parse_floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x.strip()]


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    g = ap.add_argument_group("(b) coherence vs K")
    g.add_argument("--batch", type=int, default=2)
    g.add_argument("--heads", type=int, default=12)
    g.add_argument("--seq", type=int, default=256)
    g.add_argument("--osc", type=int, default=32, help="oscillators per head O")
    g.add_argument("--steps", type=int, default=10, help="Euler steps T")
    g.add_argument("--dt", type=float, default=0.1)
    g.add_argument("--theta_std", type=float, default=0.55, help="theta0 = pi*tanh(N(0, theta_std^2))")
    g.add_argument("--freq_std", type=float, default=0.1, help="omega ~ N(0, freq_std^2)")
    g.add_argument("--k_min", type=float, default=-2.0)
    g.add_argument("--k_max", type=float, default=2.0)
    g.add_argument("--k_step", type=float, default=0.25)
    g.add_argument("--causal_norm", default="count", choices=("count", "length"))
    g.add_argument("--seeds", type=int, default=5, help="independent draws of theta0 and omega")
    g.add_argument("--out", default=os.path.join("runs", "phase_dynamics", "coherence_vs_k.png"),
                   help="plot path (PNG); the CSV goes next to it with .csv")
    g = ap.add_argument_group("(c) interpretability R of unsynchronised phases")
    g.add_argument("--trials", type=int, default=200)
    g.add_argument("--interp_heads", type=int, default=12)
    g.add_argument("--interp_seq", type=int, default=512)
    g.add_argument("--interp_osc", type=int, default=32)
    g.add_argument("--tanh_sigmas", type=parse_floats, default=[0.55, 1.0, 2.0],
                   help="comma-separated sigmas for extra rows with phases pi*tanh(N(0, sigma^2)); empty for none")
    C.add_results_arg(ap, "phase_dynamics")
    return ap.parse_args(argv)


def results_data(out: dict, start: dict, ks: list[float], rows: list[dict], expect: dict) -> dict:
    """What the claims ledger reads: R_tok at t=0 and at t=T per sign x causal x K (mean, std over seeds), and the
    interpretability R of each phase distribution with its expectation for uniform phases."""
    sweep = {f"{sign}_{'causal' if causal else 'noncausal'}": {f"{k:+.2f}": C.mean_std(out[(sign, causal, k)]["tokT"])[:2]
                                                                for k in ks} for sign, causal in COMBOS}
    interp = [{"phases": r["phases"], "mean": C.mean_std(r["mean"])[:2], "std": C.mean_std(r["std"])[:2],
               "tokens": C.mean_std(r["tokens"])[:2]} for r in rows]
    return {"R_tok_0": C.mean_std(start["tok0"])[:2], "R_tok_T": sweep, "interpret": interp,
            "interpret_expected": expect["r_mean"], "reported": REPORTED}


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    for name in ("batch", "heads", "seq", "osc", "steps", "seeds", "trials", "interp_heads", "interp_seq", "interp_osc"):
        if getattr(args, name) < 1:
            C.fail(f"--{name} must be >= 1.")
    if args.k_step <= 0 or args.k_max < args.k_min:
        C.fail("need --k_step > 0 and --k_max >= --k_min.")
    if args.seeds < 2 or args.trials < 2:
        C.fail("--seeds and --trials must be >= 2 (the tables report a std).")
    ks = k_grid(args.k_min, args.k_max, args.k_step)

    import jax

    t0 = time.perf_counter()
    print(f"phase_dynamics: {jax.devices()[0].device_kind} ({jax.default_backend()})", flush=True)
    out, start = coherence_sweep(args, ks)
    t_sweep = time.perf_counter() - t0
    print(f"\n(b) Coherence after T={args.steps} Euler steps (dt={args.dt}) against K, B={args.batch}, H={args.heads}, "
          f"S={args.seq}, O={args.osc}, theta0 = pi·tanh(N(0, {args.theta_std}²)), omega ~ N(0, {args.freq_std}²), "
          f"causal_norm={args.causal_norm}; mean ± std over {args.seeds} seeds. R_tok = order_parameter_tokens "
          f"(across tokens, mean over b,h,o); R_ch = order_parameter_channels (across the O channels of a token, mean "
          f"over b,h,s). [{t_sweep:.1f} s]\n")
    print(render_sweep(out, start, ks))
    folder = os.path.dirname(os.path.abspath(args.out))
    os.makedirs(folder, exist_ok=True)
    csv_path = os.path.splitext(args.out)[0] + ".csv"
    write_csv(csv_path, out, start, ks, args)
    plot(args.out, out, start, ks, args)
    print(f"\nwrote {args.out} and {csv_path}")

    t1 = time.perf_counter()
    rows = interpret_null(args)
    expect = interpret_expectation(args.interp_heads, args.interp_osc)
    print(f"\n(c) The interpretability script's R (mean of raw angles over H={args.interp_heads} heads, then "
          f"|mean_o e^(iφ)| per position) of phases that are not synchronised, [H,S,O] = [{args.interp_heads},"
          f"{args.interp_seq},{args.interp_osc}], mean ± std over {args.trials} trials of the per-trial statistic over "
          f"the S positions. φ std for uniform phases: π/√(3H) = {expect['phi_std']:.3f} rad. "
          f"[{time.perf_counter() - t1:.1f} s]\n")
    print(render_interpret(rows, expect, args))
    C.write_results(args.results, "experiments.claims.phase_dynamics", argv, results_data(out, start, ks, rows, expect))
    return 0


if __name__ == "__main__":
    sys.exit(main())
