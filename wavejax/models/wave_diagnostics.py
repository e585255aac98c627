"""Wave diagnostics of a trained model (spec §10): embedding spectrum peaks, interference fringes in the attention
weights, and the stability of the layer-to-layer trajectory; numbers plus plots in the run directory.

Faithful: the spectrum of the lookup table E (what the original analysed: `simple_embed`, not a wave parameter), the
fringe test on attention rows (the original's weight extractor always returned None, so it never fired), and the
"Lyapunov exponent" mean_l log |h_l - h_{l-1}| (no perturbation; "stable" when < 0.1). Added: the spectrum of the
embedding vectors the model actually uses, and a finite-time Lyapunov exponent from a perturbed embedding output.

Definitions (numpy, on host):
  spectrum(M) = mean over rows of |rfft(M, axis=-1)|; peaks = interior local maxima above mean + 0.1 std; a harmonic
  pair is two of the `top` highest peaks whose index ratio is within 0.1 of 2, 3 or 1.5.
  fringes(A) = the autocorrelation of each attention row (q >= T/2, mean removed, via FFT), averaged; peaks are
  positive local maxima at lags >= 1; "fringes" when there are >= 2 peaks with spacing std / mean < 0.3.
  perturbation exponent = (1/L) mean_tokens log(|dh_L| / |delta|), delta = 1e-3 |e| u on each token's embedding
  output e (u a random unit vector); > 0 means perturbations grow through the stack.
"""

from __future__ import annotations

import os

import numpy as np

from wavejax.analysis.plots import _pyplot
from wavejax.analysis.reports import register_reporter
from wavejax.models.gpt import layer_outputs_in_order, scanned, segments
from wavejax.nn import registry

HARMONIC_RATIOS = (2.0, 3.0, 1.5)
PLOTS = ("wave_spectrum.png", "wave_interference.png", "wave_trajectories.png")


# -- numbers (pure numpy) -------------------------------------------------------------------------------------------

def spectrum_analysis(matrix, top: int = 5, tolerance: float = 0.1) -> dict:
    """Peaks and harmonic pairs of the mean magnitude spectrum of the rows of `matrix` [rows, features]."""
    spec = np.abs(np.fft.rfft(np.asarray(matrix, np.float64), axis=-1)).mean(axis=0)
    inner = np.arange(1, len(spec) - 1)
    is_max = (spec[inner] > spec[inner - 1]) & (spec[inner] > spec[inner + 1])
    threshold = spec.mean() + 0.1 * spec.std()
    peaks = inner[is_max & (spec[inner] > threshold)]
    best = sorted(peaks[np.argsort(spec[peaks])[::-1][:top]].tolist())
    pairs = [(a, b) for i, a in enumerate(best) for b in best[i + 1:]
             if any(abs(b / a - r) <= tolerance for r in HARMONIC_RATIOS)]
    return {"spectrum": spec, "peaks": peaks.tolist(), "top_peaks": best, "harmonic_pairs": pairs}


def fringe_analysis(weights) -> dict:
    """Fringe test on attention weights [..., T, T] (rows = queries)."""
    w = np.asarray(weights, np.float64)
    t = w.shape[-1]
    rows = w[..., t // 2:, :].reshape(-1, t)
    rows = rows - rows.mean(axis=-1, keepdims=True)
    power = np.abs(np.fft.rfft(rows, n=2 * t, axis=-1)) ** 2
    auto = np.fft.irfft(power, axis=-1)[:, :t]
    auto = (auto / np.maximum(auto[:, :1], 1e-30)).mean(axis=0)
    lags = np.arange(1, t - 1)
    peaks = lags[(auto[lags] > auto[lags - 1]) & (auto[lags] > auto[lags + 1]) & (auto[lags] > 0)]
    spacing = np.diff(peaks)
    cv = float(spacing.std() / spacing.mean()) if len(spacing) else float("inf")
    return {"autocorrelation": auto, "peaks": peaks.tolist(), "spacing_cv": cv,
            "fringes": bool(len(peaks) >= 2 and cv < 0.3)}


def lognorm_exponent(layer_outputs) -> float:
    """The original's "Lyapunov exponent": mean over consecutive outputs of log |h_l - h_{l-1}| (Frobenius)."""
    hs = [np.asarray(h, np.float64) for h in layer_outputs]
    return float(np.mean([np.log(np.linalg.norm(b - a) + 1e-30) for a, b in zip(hs[:-1], hs[1:])]))


def perturbation_growth(clean, perturbed) -> np.ndarray:
    """log(|dh_l| / |dh_0|) per layer l (mean over tokens); clean/perturbed: lists [e, h_0, ..., h_{L-1}]."""
    d0 = np.linalg.norm(np.asarray(perturbed[0], np.float64) - np.asarray(clean[0], np.float64), axis=-1)
    out = []
    for a, b in zip(clean, perturbed):
        d = np.linalg.norm(np.asarray(b, np.float64) - np.asarray(a, np.float64), axis=-1)
        out.append(float(np.mean(np.log((d + 1e-30) / (d0 + 1e-30)))))
    return np.asarray(out)


# -- model access (jax) ---------------------------------------------------------------------------------------------

def attention_weights_in_order(intermediates, model_config) -> list:
    """The weights sown by wave attentions as one [B,H,T,T] array per layer (None for layers without)."""

    out = []
    for i, (_, count) in enumerate(segments(model_config)):
        if scanned(model_config, count):
            stacked = intermediates.get(f"seg{i}", {}).get("block", {}).get("attn", {}).get("weights")
            out.extend([None] * count if stacked is None else [stacked[0][j] for j in range(count)])
        else:
            for j in range(count):
                w = intermediates.get(f"seg{i}_{j}", {}).get("attn", {}).get("weights")
                out.append(None if w is None else w[0])
    return out


def collect(model, params, tokens, delta_scale: float = 1e-3, seed: int = 0) -> dict:
    """One eval forward with layer outputs and attention weights, and one with the embedding output perturbed."""
    import flax.linen as nn
    import jax
    import jax.numpy as jnp


    tokens = jnp.asarray(tokens, jnp.int32)

    @jax.jit
    def run(p, delta):
        def add_delta(next_fun, args, kwargs, context):
            out = next_fun(*args, **kwargs)
            if context.module.name == "embed" and context.method_name == "__call__":
                out = out + delta.astype(out.dtype)
            return out

        with nn.intercept_methods(add_delta):
            _, v = model.apply({"params": p}, tokens, True, mutable=["layer_outputs", "intermediates"])
        return layer_outputs_in_order(v["layer_outputs"], model.config), v.get("intermediates", {})

    zero = jnp.zeros((*tokens.shape, model.config.d_model), jnp.float32)
    clean, inter = run(params, zero)
    direction = np.random.default_rng(seed).standard_normal(zero.shape)
    direction /= np.linalg.norm(direction, axis=-1, keepdims=True)
    delta = delta_scale * np.linalg.norm(np.asarray(clean[0]), axis=-1, keepdims=True) * direction
    perturbed, _ = run(params, jnp.asarray(delta, jnp.float32))
    weights = attention_weights_in_order(jax.device_get(inter), model.config)
    return {"layers": jax.device_get(clean), "perturbed": jax.device_get(perturbed), "weights": weights}


def embedding_rows(model, params) -> np.ndarray:
    """The embedding output of every token at position 0, [V, d] (what the first block sees for it)."""
    import jax
    import jax.numpy as jnp


    embed = registry.EMBEDDINGS[model.config.embedding](model.config, model.vocab_size)
    ids = jnp.arange(model.vocab_size, dtype=jnp.int32)[:, None]
    rows = jax.jit(lambda p: embed.apply({"params": p}, ids, True))(params["embed"])
    return np.asarray(rows[:, 0], np.float64)


def lookup_table(params) -> np.ndarray | None:
    """The embedding's lookup table E (the original's spectrum input), if the embedding has one."""
    embed = params.get("embed", {})
    for key in ("simple_table", "wte"):
        if key in embed:
            return np.asarray(embed[key]["embedding"], np.float64)
    return None


# -- the report -------------------------------------------------------------------------------------------------------

def wave_diagnostics(model, params, tokens, workdir: str | None = None) -> dict:
    """Every diagnostic as {name: float}; with a workdir, also the three plots (PLOTS) in it."""
    got = collect(model, params, tokens)
    spectra = {"table": lookup_table(params), "embedding": embedding_rows(model, params)}
    numbers, analyses = {}, {}
    for name, matrix in spectra.items():
        if matrix is None:
            continue
        a = spectrum_analysis(matrix)
        analyses[name] = a
        numbers[f"spectrum/{name}_peaks"] = float(len(a["peaks"]))
        numbers[f"spectrum/{name}_harmonic_pairs"] = float(len(a["harmonic_pairs"]))
    fringes = [None if w is None else fringe_analysis(w) for w in got["weights"]]
    with_weights = [f for f in fringes if f is not None]
    if with_weights:
        numbers["fringes/layers_with_fringes"] = float(sum(f["fringes"] for f in with_weights))
        numbers["fringes/layers_checked"] = float(len(with_weights))
    n_layers = len(got["layers"]) - 1
    growth = perturbation_growth(got["layers"], got["perturbed"])
    numbers["trajectory/lognorm_exponent"] = lognorm_exponent(got["layers"])
    numbers["trajectory/lognorm_stable"] = float(numbers["trajectory/lognorm_exponent"] < 0.1)
    numbers["trajectory/perturbation_exponent"] = float(growth[-1] / max(n_layers, 1))
    if workdir is not None:
        _plot_spectra(analyses, os.path.join(workdir, PLOTS[0]))
        _plot_fringes(got["weights"], fringes, os.path.join(workdir, PLOTS[1]))
        _plot_trajectories(got["layers"], growth, os.path.join(workdir, PLOTS[2]))
    return numbers


@register_reporter("wave")
def wave_report(ctx) -> dict:
    """End-of-run report of a wave run: diagnostics on the first 4 validation windows, plots into the run dir."""
    t = ctx.config.model.block_size
    val = np.asarray(ctx.data.val)
    n = max(1, min(4, len(val) // t))
    tokens = np.stack([val[i * t:(i + 1) * t] for i in range(n)]).astype(np.int32)
    return wave_diagnostics(ctx.model, ctx.params, tokens, ctx.workdir)


# -- plots ----------------------------------------------------------------------------------------------------------

def _plot_spectra(analyses: dict, path: str) -> None:

    plt = _pyplot()
    fig, axes = plt.subplots(1, max(len(analyses), 1), figsize=(5.5 * max(len(analyses), 1), 3.8), dpi=110,
                             squeeze=False)
    for ax, (name, a) in zip(axes[0], analyses.items()):
        spec = a["spectrum"]
        ax.plot(np.arange(len(spec)), spec, color="C0", linewidth=1.2)
        ax.plot(a["peaks"], spec[a["peaks"]], "o", color="C1", markersize=4, label="peaks")
        ax.plot(a["top_peaks"], spec[a["top_peaks"]], "o", mfc="none", color="C3", markersize=8, label="top peaks")
        title = "lookup table E (the original's input)" if name == "table" else "embedding outputs (position 0)"
        ax.set_title(f"{title}\n{len(a['harmonic_pairs'])} harmonic pairs among top peaks", fontsize=9)
        ax.set_xlabel("frequency index (rfft over the feature axis)")
        ax.set_ylabel("mean |rfft|")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _plot_fringes(weights: list, fringes: list, path: str) -> None:

    plt = _pyplot()
    fig, (ax_w, ax_a) = plt.subplots(1, 2, figsize=(11, 4.2), dpi=110)
    first = next((w for w in weights if w is not None), None)
    if first is None:
        ax_w.text(0.5, 0.5, "no wave attention weights\n(the attention is not a wave part)", ha="center", va="center")
        ax_a.axis("off")
    else:
        ax_w.imshow(np.asarray(first)[0, 0], cmap="viridis", aspect="auto")
        ax_w.set_title("layer 0, head 0, sequence 0: attention weights", fontsize=9)
        ax_w.set_xlabel("key position")
        ax_w.set_ylabel("query position")
        for layer, f in enumerate(fringes):
            if f is not None:
                ax_a.plot(f["autocorrelation"], label=f"layer {layer}: fringes={f['fringes']}")
        ax_a.set_title("mean autocorrelation of attention rows (q >= T/2)", fontsize=9)
        ax_a.set_xlabel("lag")
        ax_a.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _plot_trajectories(layers: list, growth: np.ndarray, path: str) -> None:

    plt = _pyplot()
    fig, (ax_n, ax_g) = plt.subplots(1, 2, figsize=(10, 3.8), dpi=110)
    norms = [float(np.linalg.norm(np.asarray(h, np.float64), axis=-1).mean()) for h in layers]
    ax_n.plot(range(len(norms)), norms, "o-")
    ax_n.set_xticks(range(len(norms)), ["emb"] + [str(i) for i in range(len(norms) - 1)])
    ax_n.set_title("mean token norm |h_l|", fontsize=9)
    ax_g.plot(range(len(growth)), growth, "o-", color="C2")
    ax_g.axhline(0.0, color="gray", linewidth=0.8)
    ax_g.set_xticks(range(len(growth)), ["emb"] + [str(i) for i in range(len(growth) - 1)])
    ax_g.set_title("log(|dh_l| / |delta|): growth of a 1e-3 embedding perturbation", fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
