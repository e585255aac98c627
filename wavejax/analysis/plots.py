"""Figures from run metrics (`metrics.jsonl` records), written with matplotlib's Agg backend."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only; no display needed
    import matplotlib.pyplot as plt

    return plt


def _by_step(records: Sequence[dict], split: str) -> dict[int, float]:
    return {int(r["step"]): float(r["loss"]) for r in records if r.get("split") == split and "loss" in r}


def seed_band(runs: Sequence[Sequence[dict]], split: str):
    """(steps, mean, std) over seeds at the steps every seed logged; std is 0 with one seed."""
    curves = [_by_step(r, split) for r in runs]
    curves = [c for c in curves if c]
    if not curves:
        return np.zeros(0, int), np.zeros(0), np.zeros(0)
    steps = sorted(set.intersection(*(set(c) for c in curves)))
    values = np.array([[c[s] for s in steps] for c in curves], dtype=float).reshape(len(curves), len(steps))
    std = values.std(axis=0, ddof=1) if len(curves) > 1 else np.zeros(len(steps))
    return np.asarray(steps, int), values.mean(axis=0), std


def plot_loss_curves(runs: Mapping[str, Sequence[Sequence[dict]]], tokens_per_step: Mapping[str, int], path: str,
                     title: str | None = None) -> str:
    """Validation loss against tokens seen, one colour per config.

    runs: {label: [records of seed 0, records of seed 1, ...]}, records as in metrics.jsonl.
    Draws the mean over seeds as a line with a ±1 sample-std band, and the mean train loss faintly
    in the same colour. Returns `path`.
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 4.5), dpi=120)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (name, seeds) in enumerate(runs.items()):
        color = colors[i % len(colors)]
        per_step = tokens_per_step[name]
        steps, mean, std = seed_band(seeds, "train")
        if len(steps):
            ax.plot(steps * per_step, mean, color=color, alpha=0.3, linewidth=1.0)
        steps, mean, std = seed_band(seeds, "val")
        if len(steps):
            n = sum(1 for s in seeds if _by_step(s, "val"))
            x = steps * per_step
            ax.plot(x, mean, color=color, marker="o", markersize=3, linewidth=1.8, label=f"{name} (n={n})")
            if n > 1:
                ax.fill_between(x, mean - std, mean + std, color=color, alpha=0.2, linewidth=0)
    ax.set_xlabel("tokens")
    ax.set_ylabel("loss")
    ax.set_title(title or "validation loss (mean ± std over seeds); train loss faint")
    ax.grid(True, alpha=0.3)
    if runs:
        ax.legend(frameon=False)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
