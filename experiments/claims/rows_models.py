"""Claims ledger rows: the three language-model families (Harmonic GPT, PhaseGPT, Wave-Native GPT)."""

from __future__ import annotations

from experiments.claims.verdicts import FAILS, HOLDS, UNTESTED, Claim, configs, fmt_delta, pct, pm, significant

# -- Harmonic GPT ----------------------------------------------------------------------------------------------------

def harmonic_speed(r):
    d = r["bench_harmonic"]
    steps = {s["config"]: s for s in d["steps"]}
    std, harm = steps["harmonic:standard"], steps["harmonic"]
    att = max(d["attention"]["rows"], key=lambda a: a["T"])
    ratio = harm["train_ms"] / std["train_ms"]
    device = "the CPU" if d["device"] == "cpu (cpu)" else d["device"]
    original = (f"the report's benchmark (batch 4 × 256, 4 layers, width 256) on {device}: Harmonic train step "
                f"{harm['train_ms']:.0f} ms vs standard {std['train_ms']:.0f} ms ({ratio:.2f}×; the original code: "
                f"{harm['report_ms'] / std['report_ms']:.0f}×)")
    fair = (f"attention alone, forward + backward at T = {att['T']}: selective {att['selective_bwd_ms']:.0f} ms vs dense "
            f"{att['dense_bwd_ms']:.0f} ms ({att['selective_bwd_ms'] / att['dense_bwd_ms']:.2f}×; FLOP ratio "
            f"{att['flop_ratio']:.2f})")
    return original, fair, UNTESTED, (
        f"on the CPU the vectorised step takes {ratio:.2f}× the standard one's time and the attention is "
        f"{att['dense_bwd_ms'] / att['selective_bwd_ms']:.1f}× faster at T = {att['T']}; the claimed 2× (5–10× with "
        "kernels) is a GPU figure, and no GPU has been available")


def harmonic_quality(r):
    d = r["harmonic_quality"]
    size = f"{d['size']}+" if d["size"] else ""
    c = configs(d["compare"])
    std = c[f"harmonic:{size}standard"]["val_loss"]
    w32, w128 = c[f"harmonic:{size}f025+w32"]["val_loss"], c[f"harmonic:{size}f025+w128"]["val_loss"]
    faithful = c[f"harmonic:{size}faithful+f025+w32"]["val_loss"]
    leak = {x["run"]: x["padded_loss"] - x["window_loss"] for x in d.get("leak", [])}
    leak_text = "; ".join(f"{k}: {v:+.4f}" for k, v in leak.items())
    original = (f"the original's top-k selection, 25% wave tokens, window 32, vs the standard GPT at equal tokens "
                f"({d['compare']['tokens']:,}): Δ val {fmt_delta(faithful, std)}" +
                (f"; generation-time gap (padded future) {leak_text}" if leak_text else ""))
    fair = (f"causal selection: Δ val {fmt_delta(w32, std)} with window 32, {fmt_delta(w128, std)} with window 128 "
            f"(same detector, gating and coupling)")
    gain32, gain128 = significant(w32, std), significant(w128, std)
    if gain32 < 0 and gain128 >= 0:
        return original, fair, "artefact of the local window", (
            "the gain appears with the 32-token window and vanishes with a 128-token one, so it comes from local "
            "attention, not from the wave tokens' global path (CPU size; the report's size needs a GPU)")
    return original, fair, HOLDS if gain32 < 0 and gain128 < 0 else FAILS, "see the two Δ values"


HARMONIC_CLAIMS = [
    Claim("H1", "harmonic", "Wave-selective attention costs O(n²/16 + n), “about 4× faster”; goal: 2× faster than the "
          "standard GPT after vectorisation, 5–10× with custom kernels", "status report, part 3 (`NanoGPT/"
          "harmonic_model.py`, not public)", ("bench_harmonic",), harmonic_speed, headline=True),
    Claim("H2", "harmonic", "The top-25% “wave” tokens with global attention carry what the model needs: quality at a "
          "fraction of the attention cost", "status report, part 3", ("harmonic_quality",), harmonic_quality,
          headline=True),
]


# -- PhaseGPT --------------------------------------------------------------------------------------------------------

def _leak(d: dict, prefix: str) -> list[dict]:
    return [x for x in d["runs"] if x["run"].rsplit("_s", 1)[0] == prefix]


def phase_perplexity(r):
    c, leak = configs(r["phase_compare"]), r["phase_leak"]
    base, faithful, sound = (c[f"phase:tiny{p}"]["val_loss"] for p in ("+nophase", "+faithful", ""))
    lf, ln = _leak(leak, "phase-tiny+faithful"), _leak(leak, "phase-tiny+nophase")
    gaps = [x["prefix_loss"] - x["window_loss"] for x in lf]
    prefix_f, prefix_n = [x["prefix_loss"] for x in lf], [x["prefix_loss"] for x in ln]
    original = (f"tiny PhaseGPT (2 layers, width 64) at equal tokens ({r['phase_compare']['tokens']:,}), the original's "
                f"layer (non-causal, repulsive) vs the same trunk with attention, scored on whole windows as the "
                f"original did: Δ val {fmt_delta(faithful, base)} (reported: 4.85 vs 4.97 PPL, −2.4%)")
    fair = (f"scored from the prefix only, as generation must ({leak['batches']} val batches): the original layer "
            f"is {fmt_delta(prefix_f, prefix_n)} above attention (its own loss rises by {pm(gaps)} without the "
            f"future); the causal layer at equal tokens: Δ val {fmt_delta(sound, base)}")
    if significant(prefix_f, prefix_n) > 0 and min(gaps) > 0:
        return original, fair, "artefact of the future leak", (
            "the non-causal layer sees the tokens it predicts; without them it is worse than plain attention, and "
            "the causal layer gives no gain (tiny scale; Phase A's GPT-2 small needs a GPU)")
    return original, fair, HOLDS if significant(sound, base) < 0 else FAILS, "see the causal layer's Δ"


def phase_oscillators(r):
    c = configs(r["phase_sweep"])
    runs = {8: c["phase:tiny+faithful"], **{n: c[f"phase:tiny+faithful+osc{n}"] for n in (16, 32, 64)}}
    original = ("the original's layer at tiny scale, 3 seeds, val loss by oscillators per head: " +
                ", ".join(f"{n}: {pm(v['val_loss'])}" for n, v in runs.items()) +
                " (reported at GPT-2 small: 16 and 32 at 4.86/4.85 PPL, 64 diverged to 11.93+)")
    worse = significant(runs[64]["val_loss"], runs[32]["val_loss"])
    fair = f"64 vs 32 oscillators: Δ val {fmt_delta(runs[64]['val_loss'], runs[32]['val_loss'])}"
    return original, fair, UNTESTED, (
        ("64 oscillators are worse than 32 at tiny scale too" if worse > 0 else
         "at tiny scale 64 oscillators train as well as 32: nothing collapses") +
        "; the reported divergence was a single seed of GPT-2 small, which needs a GPU")


def phase_k2(r):
    d, c = r["phase_dynamics"], configs(r["phase_sweep"])
    rep, att = d["R_tok_T"]["repulsive_noncausal"], d["R_tok_T"]["attractive_noncausal"]
    r0 = d["R_tok_0"][0]
    k1, k2 = c["phase:tiny+faithful"]["val_loss"], c["phase:tiny+faithful+k2"]["val_loss"]
    original = (f"the layer's dynamics with the original's (repulsive) sign, spec setup: R across tokens {r0:.3f} at "
                f"t=0 → {rep['+1.00'][0]:.3f} at K=1, {rep['+2.00'][0]:.3f} at K=2; training at K=2 vs K=1 (tiny, "
                f"3 seeds): Δ val {fmt_delta(k2, k1)}")
    fair = f"the textbook (attractive) sign: R {att['+1.00'][0]:.3f} at K=1, {att['+2.00'][0]:.3f} at K=2"
    backwards = rep["+2.00"][0] < rep["+1.00"][0] < r0
    return original, fair, FAILS if backwards else HOLDS, (
        "with the original's sign a larger K desynchronises (R falls), so “K=2 over-synchronises” has the sign "
        "backwards; the K=2 run's late divergence (single seed, GPT-2 small) is not yet tested at that scale")


def phase_r088(r):
    d = r["phase_dynamics"]
    uni = d["interpret"][0]
    rep = d["reported"]
    original = (f"the original's interpretability R (raw angles averaged over heads, then |mean e^(iφ)|) of "
                f"unsynchronised Uniform(−π, π) phases: {uni['mean'][0]:.4f} ± {uni['mean'][1]:.4f} "
                f"(reported for the trained layer: {rep['mean']:.4f})")
    fair = (f"expectation for uniform phases: {d['interpret_expected']:.4f}; the Kuramoto order parameter across "
            f"tokens of the same phases: {uni['tokens'][0]:.4f}")
    noise = abs(uni["mean"][0] - rep["mean"]) < 0.05
    return original, fair, "artefact of the measure" if noise else FAILS, (
        "pure noise gives the reported number, so 0.88 is no evidence of (over-)synchronisation and no motive for "
        "Phase B")


def phase_b(_r):
    return ("— (preregistered; the original never ran it: “Preregistered, Not Run”)",
            "— (configs/phase.py has the four Phase B presets; WikiText-2 needs the hf extra and the network)",
            UNTESTED, "no Phase B numbers exist anywhere; running it needs WikiText-2 and a GPU")


PHASE_CLAIMS = [
    Claim("P1", "phase", "Phase A: the Kuramoto layer lowers validation perplexity (4.85 vs 4.97, “winner”)",
          "`docs/PHASE_A_FINAL_REPORT.md` L43-53", ("phase_compare", "phase_leak"), phase_perplexity, headline=True),
    Claim("P2", "phase", "“Goldilocks” oscillator count: 16–32 oscillators work, 64 collapses",
          "`docs/PHASE_A_FINAL_REPORT.md`", ("phase_sweep",), phase_oscillators),
    Claim("P3", "phase", "K=2 over-synchronises and collapses (PPL 4.94 at epoch 19 → 9.21 at epoch 36)",
          "`docs/PHASE_A_FINAL_REPORT.md` L61-79", ("phase_dynamics", "phase_sweep"), phase_k2),
    Claim("P4", "phase", "R ≈ 0.88 (“over-synchronisation”, outside the target band 0.30–0.55)",
          "`results/interpretability/notes.md`", ("phase_dynamics",), phase_r088, headline=True),
    Claim("P5", "phase", "Phase B: coherence control keeps PPL ≤ 1.05 × baseline and R in 0.35–0.55 on WikiText-2",
          "`PREREGISTRATION.md`; `configs/phase_b/*.yaml`", (), phase_b),
]


# -- Wave-Native GPT -------------------------------------------------------------------------------------------------

FAIR_LABELS = ("classic (AdamW, CE)", "wave [B] as published (RGD + QFE)", "wave [B] trained like classic (AdamW, CE)")


def wave_headline(r):
    d = r["wave_benchmark"]
    (pc, pw), c = d["published"], configs(d["fair"])
    classic, published = (c[k]["val_loss"] for k in FAIR_LABELS[:2])
    lower = (pc["one_batch"] - pw["one_batch"]) / pc["one_batch"]
    original = (f"`{d['preset'] or 'full'}` size: classic {pc['steps']:,} steps, wave {pw['steps']:,}; each scored "
                f"on ONE training batch: {pc['one_batch']:.4f} vs {pw['one_batch']:.4f} (wave {pct(lower, '.1f')} "
                f"lower; published 1.1435 vs 0.8877, 22.4%); that score's own spread over batches: "
                f"{pw['train_std']:.4f}")
    fair = (f"equal tokens ({d['fair']['tokens']:,} each), held-out text, 3 seeds: classic {pm(classic)}; wave as "
            f"published {fmt_delta(published, classic)}")
    if lower > 0 and significant(published, classic) >= 0:
        return original, fair, "artefact of 3× the steps and a training-batch score", (
            "given equal tokens and scored on held-out text the wave model is not better than the classic GPT "
            f"(`{d['preset'] or 'full'}` size here; the published 15M-parameter, 41/122-epoch runs need a GPU)")
    return original, fair, HOLDS if significant(published, classic) < 0 else FAILS, "see the fair Δ"


def wave_ablation(r):
    c = configs(r["wave_benchmark"]["fair"])
    classic, published, adamw = (c[k]["val_loss"] for k in FAIR_LABELS)
    original = "— (the paper's ablation values ~1.20 / ~1.05 / ~1.00 / 0.89 are “expected”, never measured)"
    fair = (f"equal tokens, 3 seeds: the wave architecture with AdamW + CE vs the classic {fmt_delta(adamw, classic)}; "
            f"adding RGD + QFE {fmt_delta(published, adamw)}")
    arch_worse = significant(adamw, classic) > 0
    return original, fair, FAILS if arch_worse else HOLDS, (
        ("the architecture alone is worse than the classic GPT; " if arch_worse else "") +
        ("the wave optimizer and coherence loss help it" if significant(published, adamw) < 0 else
         "the wave optimizer and coherence loss do not help it measurably"))


def wave_diagnostics(r):
    d = r["wave_diagnostics_null"]
    rates = d["harmonic"].values()
    lyap = d["lognorm_by_batch"]
    b = sorted(lyap, key=int)
    original = (f"the original's harmonic-spectrum test on i.i.d. N(0,1) tables (no structure): fires in "
                f"{pct(min(rates))}–{pct(max(rates))} of trials (up to {d['trials']:,} per table size)")
    fair = (f"its “Lyapunov exponent” of one residual stack passed with B sequences: {lyap[b[0]]:.2f} (B={b[0]}) → "
            f"{lyap[b[-1]]:.2f} (B={b[-1]}); “stable” needs < 0.1")
    return original, fair, "artefact of the tests", (
        "the spectrum test cannot tell noise from harmonics, and the exponent grows with the batch size, not the dynamics")


WAVE_CLAIMS = [
    Claim("W1", "wave", "Wave-Native GPT: validation loss 0.8877 vs the classic GPT's 1.1435, “22% better”",
          "[B] `benchmark_config.json` and `wave_benchmark.py` (commit 38a89ad)", ("wave_benchmark",), wave_headline,
          headline=True),
    Claim("W2", "wave", "Component ablation: each physics component (wave embedding, RGD, QFE) lowers the loss",
          "[K] `PAPER_DRAFT.md` l.356-367", ("wave_benchmark",), wave_ablation),
    Claim("W3", "wave", "The model learns harmonic structure and stable dynamics (Lyapunov exponent < 0.1)",
          "[K] diagnostics (`wave_diagnostics.py`)", ("wave_diagnostics_null",), wave_diagnostics),
]
