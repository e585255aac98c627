"""What the field experiments write and print: markdown tables (with the original's reported rows), CSV rows and the
plots."""

from __future__ import annotations

import csv
import math
import os

import jax
import numpy as np

from wavejax.field import metrics as M
from wavejax.ops import oscillators as D

# The original's reported runs (PROJECT_STATUS_DEC25_2025.md of the original repository; RTX 4070 Ti, runtime of the
# trial loop without the eigendecomposition). Medium was reported as "2,499 nodes"; the code builds a 50 x 50 lattice.
ORIGINAL_REPORTED = {
    "small": {"nodes": 961, "modes": 200, "timesteps": 1000, "trials": 100, "detection": 0.25,
              "rotation_mean": 3274.72, "rotation_std": 1155.85, "wave_speed": 1.24, "runtime_s": 21.5,
              "trials_per_s": 4.6},
    "medium": {"nodes": 2500, "modes": 500, "timesteps": 2000, "trials": 500, "detection": 0.25,
               "rotation_mean": 6839.19, "rotation_std": 1795.24, "wave_speed": 1.30, "runtime_s": 224.7,
               "trials_per_s": 2.2},
    "large": {"nodes": 4900, "modes": 800, "timesteps": 5000, "trials": 200, "detection": 0.25,
              "rotation_mean": 16557.87, "rotation_std": 2829.69, "wave_speed": 1.82, "runtime_s": 256.1,
              "trials_per_s": 0.8},
}


def markdown_table(headers, rows) -> str:
    """A markdown table, first column left-aligned, the rest right-aligned."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]

    def line(row):
        padded = (c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))
        return "| " + " | ".join(padded) + " |"

    rule = "|" + "|".join(":" + "-" * (w + 1) if i == 0 else "-" * (w + 1) + ":" for i, w in enumerate(widths)) + "|"
    return "\n".join([line(cells[0]), rule] + [line(r) for r in cells[1:]])


def fmt(x, spec: str = ".2f") -> str:
    return "n/a" if x is None or (isinstance(x, float) and not math.isfinite(x)) else format(x, spec)


def plus_minus(mean, std, spec: str = ".1f") -> str:
    if mean is None or not math.isfinite(mean):
        return "n/a"
    if std is None or not math.isfinite(std):
        return format(mean, spec)
    return f"{format(mean, spec)} ± {format(std, spec)}"


def write_csv(path: str, header, rows) -> None:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def device_name() -> str:
    d = jax.devices()[0]
    return f"{d.platform} ({d.device_kind})" if d.platform != "cpu" else f"cpu ({os.cpu_count()} cores)"


def modes_table(s: dict, reported: str, faithful: bool) -> str:
    headers = ["run", "nodes", "modes", "timesteps", "trials", "wave detection", "mean rotation (°)", "° per step",
               "CV", "wave speed", "overflowed", "trial loop (s)", "trials/s"]
    rows = []
    if reported:
        r = ORIGINAL_REPORTED[reported]
        rows.append([f"original {reported} (reported, RTX 4070 Ti)", r["nodes"], r["modes"], r["timesteps"],
                     r["trials"], f"{100 * r['detection']:.1f}%", plus_minus(r["rotation_mean"], r["rotation_std"], ".2f"),
                     f"{r['rotation_mean'] / r['timesteps']:.2f}",
                     f"{100 * r['rotation_std'] / r['rotation_mean']:.1f}%",
                     f"{r['wave_speed']:.2f}", "n/a", f"{r['runtime_s']:.1f}", f"{r['trials_per_s']:.1f}"])
    label = "wavejax, " + ("faithful (type = trial % 4)" if faithful else "types drawn at random")
    rows.append([f"{label}, {s['device']}", s["nodes"], s["modes"], s["timesteps"], s["trials"],
                 f"{100 * s['detection']:.1f}% ({s['detected']}/{s['trials']})",
                 plus_minus(s["rotation_mean"], s["rotation_std"], ".2f") + ("" if s["rotation_n"] == s["trials"] else
                                                                      f" (n={s['rotation_n']})"),
                 fmt(s["rotation_per_step"]), f"{fmt(100 * s['cv'], '.1f')}%", fmt(s["wave_speed"]),
                 f"{100 * s['overflow']:.1f}%", f"{s['run_s']:.2f}", f"{s['trials_per_s']:.1f}"])
    note = (f"Rotation: mean ± sample std over trials whose rotation is finite; ° per step = mean / (timesteps - 1) "
            f"(the reported row: / timesteps). Wave speed: mean over detected trials (mean pairwise distance "
            f"{s['mean_distance']:.3f} / (half-index + 1)). Overflowed: trajectories that reached inf/NaN in float32; "
            f"has_wave equals 'stayed finite' in {100 * s['wave_equals_finite']:.1f}% of trials. Trial loop excludes "
            f"setup ({s['setup_s']:.2f} s: lattice + eigendecomposition) and compile ({s['compile_s']:.2f} s).")
    return markdown_table(headers, rows) + "\n\n" + note


def type_table(res: dict) -> str:
    headers = ["initial condition", "trials", "wave detected", "stayed finite", "mean rotation (°)",
               "mean corr lags 1-5"]
    rows = []
    for i, name in enumerate(D.IC_TYPES):
        sel = res["ic_type"] == i
        if not sel.any():
            rows.append([name, 0, "-", "-", "-", "-"])
            continue
        rot = res["rotation"][sel]
        rot = rot[np.isfinite(rot)]
        corr = res["correlations"][sel][:, :5]
        c5 = corr.mean(axis=1) if corr.shape[1] else np.full(len(corr), np.nan)
        c5 = c5[np.isfinite(c5)]
        rows.append([name, int(sel.sum()), f"{100 * res['has_wave'][sel].mean():.0f}%",
                     f"{100 * (res['blowup_step'][sel] < 0).mean():.0f}%",
                     plus_minus(float(rot.mean()) if len(rot) else None,
                         float(rot.std(ddof=1)) if len(rot) > 1 else None, ".0f"),
                     fmt(float(c5.mean()) if len(c5) else None, ".3f")])
    return markdown_table(headers, rows)


def plot_modes(path: str, res: dict, s: dict) -> None:
    plt = _pyplot()
    fig, axes = plt.subplots(1, 4, figsize=(19, 4.5))
    rot = res["rotation"][np.isfinite(res["rotation"])]
    axes[0].hist(rot, bins=30, edgecolor="black", alpha=0.7)
    axes[0].set(xlabel="rotation angle (degrees)", ylabel="trials", title=f"rotation (n={len(rot)} finite)")
    rates = [res["has_wave"][res["ic_type"] == i].mean() * 100 if (res["ic_type"] == i).any() else 0
             for i in range(len(D.IC_TYPES))]
    finite = [(res["blowup_step"][res["ic_type"] == i] < 0).mean() * 100 if (res["ic_type"] == i).any() else 0
              for i in range(len(D.IC_TYPES))]
    x = np.arange(len(D.IC_TYPES))
    axes[1].bar(x - 0.2, rates, 0.4, label="wave detected")
    axes[1].bar(x + 0.2, finite, 0.4, label="stayed finite")
    axes[1].set_xticks(x, D.IC_TYPES)
    axes[1].set(ylabel="% of trials", title="detection by initial condition")
    axes[1].legend(fontsize=8)
    speeds = res["wave_speed"][res["has_wave"]]
    if len(speeds):
        axes[2].hist(speeds, bins=20, edgecolor="black", alpha=0.7, color="green")
    axes[2].set(xlabel="wave speed", title=f"wave speed (n={len(speeds)})")
    for i, name in enumerate(D.IC_TYPES):
        sel = res["ic_type"] == i
        corr = res["correlations"][sel]
        finite = np.isfinite(corr).all(axis=1)
        if finite.any():  # overflowed trials have no correlations to show
            c = corr[finite].mean(axis=0)
            axes[3].plot(np.arange(1, len(c) + 1), c, marker="o", ms=3, label=name)
    axes[3].axhline(M.WAVE_THRESHOLD, color="gray", ls=":")
    axes[3].axhline(M.WAVE_HALF, color="gray", ls="--")
    axes[3].set(xlabel="lag (steps)", ylabel="correlation", title="lag correlations (finite trials)")
    axes[3].legend(fontsize=8)
    fig.suptitle(f"{s['nodes']} nodes, {s['modes']} modes, {s['timesteps']} steps, {s['trials']} trials "
                 f"({'type = trial % 4' if s['seed_faithful'] else 'types drawn at random'})")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def loglog_slope(x, y) -> float:
    x, y = np.asarray(x, float), np.asarray(y, float)
    ok = np.isfinite(y) & (y > 0)
    if ok.sum() < 2:
        return float("nan")
    return float(np.polyfit(np.log(x[ok]), np.log(y[ok]), 1)[0])


def plot_scaling(path: str, by: dict) -> None:
    plt = _pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.3))
    for varied, ax_x in (("nodes", "nodes"), ("timesteps", "timesteps")):
        pts = by[varied]
        x = [p[ax_x] for p in pts]
        axes[0].errorbar(x, [p["rotation_mean"] for p in pts], yerr=[p["rotation_std"] for p in pts], marker="o",
                         capsize=3, label=f"{varied} varied")
        axes[1].plot(x, [100 * p["cv"] for p in pts], marker="o", label=f"{varied} varied")
    pts = by["nodes"]
    axes[2].plot([p["nodes"] for p in pts], [p["wave_speed"] for p in pts], marker="o", label="measured speed")
    axes[2].plot([p["nodes"] for p in pts], [p["distance_over_20"] for p in pts], ls="--", label="mean distance / 20")
    for ax, title in zip(axes, ("rotation (degrees)", "CV of rotation (%)", "wave speed vs nodes (T fixed)")):
        ax.set_xscale("log")
        ax.set_title(title)
        ax.set_xlabel("nodes or timesteps")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    axes[0].set_yscale("log")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_hubs(path: str, rows, h) -> None:
    plt = _pyplot()
    fig, axes = plt.subplots(1, 4, figsize=(19, 4.3))
    cols = {"lcc_fraction": 5, "detection": 6, "delta_C": 11, "delta_R": 14}
    for ax, (name, col) in zip(axes, cols.items()):
        for n in h.nodes:
            for st in h.strategies:
                sel = [r for r in rows if r[0] == n and r[1] == st]
                ax.plot([100 * r[2] for r in sel], [r[col] for r in sel], marker="o", label=f"N={n} {st}")
        ax.set(xlabel="nodes removed (%)", title=name)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def mean_std(x):
    x = np.asarray(x, np.float64)
    x = x[np.isfinite(x)]
    return (float(x.mean()) if len(x) else float("nan"), float(x.std(ddof=1)) if len(x) > 1 else float("nan"))


def crossing(xs, ys, level: float) -> float:
    """The first x where ys crosses `level` from below (linear interpolation), NaN if never."""
    for i in range(1, len(xs)):
        if ys[i - 1] < level <= ys[i]:
            return float(xs[i - 1] + (level - ys[i - 1]) * (xs[i] - xs[i - 1]) / (ys[i] - ys[i - 1]))
    return float("nan")


def plot_coupling(path: str, ks, summary: dict) -> None:
    plt = _pyplot()
    fig, axes = plt.subplots(1, 4, figsize=(19, 4.3))
    for kind, sm in summary.items():
        res = sm["res"]
        line = axes[0].errorbar(ks, res["R_mean"].mean(1), yerr=res["R_mean"].std(1), marker="o", ms=3, capsize=2,
                                label=kind)
        if sm.get("theory") is not None:
            axes[0].plot(ks, sm["theory"], "-", color=line[0].get_color(), alpha=0.6, label=f"{kind}: theory, N → ∞")
        if np.isfinite(res["C_mean"]).any():
            axes[1].plot(ks, np.nanmean(res["C_mean"], 1), marker="o", ms=3, label=kind)
        if np.isfinite(res["xi_mean"]).any():
            axes[2].plot(ks, np.nanmean(res["xi_mean"], 1), marker="o", ms=3, label=kind)
            axes[3].plot(ks, 100 * sm["detected"].mean(1), marker="o", ms=3, label=kind)
    for ax, title in zip(axes, ("order parameter R", "C(t)", "correlation length ξ (lattice spacings)",
                                "plane waves detected (%)")):
        ax.set(xlabel="coupling K", title=title)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
