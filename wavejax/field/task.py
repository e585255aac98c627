"""The field experiments behind `python -m wavejax.main --config=configs/field.py:NAME` (task "field").

Faithful (`field.seed_faithful=True`, the presets small/medium/large/xlarge): the original GPU experiment, its
initial-condition type fixed by trial % 4 and C(t) fed random phases. Default (False): the type is drawn at random
per trial and C(t) takes the field's own phases. The original's metrics are always reported; the controls add more.

Experiments (`field.experiment`):
  modes     the original small/medium/large/xlarge run: per-trial CSV, the summary table next to the original's
            reported row, a per-type table, plots
  scaling   the same trials with the number of nodes and the number of timesteps varied separately
  hubs      Barabási–Albert graphs with 5-25% of the nodes removed at random / by highest / by lowest degree: the
            mode model's rotation, wave detection and C(t), and Kuramoto synchrony, against the intact graph
  coupling  Kuramoto networks over a coupling sweep: R, C(t), correlation length, plane waves vs shuffled surrogates

Every trial has its own key, fold_in(PRNGKey(seed), trial_seed + trial) (the original seeds torch with 42 + trial),
so a trial's numbers do not depend on how trials are batched; the trial axis leads every batched array.
"""

from __future__ import annotations

import json
import math
import os

import jax
import jax.numpy as jnp
import numpy as np

from wavejax.field import graphs as G
from wavejax.field import theory as T
from wavejax.field.report import (
    crossing,
    device_name,
    fmt,
    loglog_slope,
    markdown_table,
    mean_std,
    modes_table,
    plot_coupling,
    plot_hubs,
    plot_modes,
    plot_scaling,
    plus_minus,
    type_table,
    write_csv,
)
from wavejax.field.schema import validate_task  # noqa: F401  (a task module has run_task and validate_task)
from wavejax.field.trials import (
    kuramoto_graph,
    kuramoto_static,
    mode_graph,
    mode_setup,
    run_kuramoto_points,
    run_mode_trials,
    summarize_modes,
    trial_keys,
)
from wavejax.ops import oscillators as D
from wavejax.rundir import RunDir, read_json, write_atomic


def run_modes(config, workdir: str) -> dict:
    f = config.field
    setup = mode_setup(mode_graph(f), f.modes, f.eigen)
    res = run_mode_trials(setup, f, seed=config.seed, timesteps=f.timesteps, trials=f.trials)
    s = summarize_modes(res, f.timesteps)
    s.update(nodes=setup.graph.n, modes=int(f.modes), timesteps=int(f.timesteps), setup_s=setup.seconds,
             compile_s=res["compile_s"], run_s=res["run_s"], trials_per_s=f.trials / res["run_s"],
             mean_distance=setup.mean_distance, seed_faithful=bool(f.seed_faithful), device=device_name())

    header = ["trial", "wave_type", "ic_type", "rotation_angle", "has_wave", "wave_speed", "blowup_step", "C_mean",
              "corr_lag1", "corr_mean_lags1_5", "n_nodes", "n_modes", "timesteps"]
    rows = []
    for t in range(f.trials):
        c = res["correlations"][t]
        rows.append([t, int(res["ic_type"][t]), D.IC_TYPES[res["ic_type"][t]], float(res["rotation"][t]),
                     bool(res["has_wave"][t]), float(res["wave_speed"][t]), int(res["blowup_step"][t]),
                     float(res["C_mean"][t]), float(c[0]) if len(c) else "", float(np.mean(c[:5])) if len(c) else "",
                     setup.graph.n, f.modes, f.timesteps])
    write_csv(os.path.join(workdir, "results.csv"), header, rows)

    table = modes_table(s, f.reported, f.seed_faithful)
    by_type = type_table(res)
    text = (f"{table}\n\n{by_type}\n")
    with open(os.path.join(workdir, "table.md"), "w", encoding="utf-8") as fh:
        fh.write(text)
    with open(os.path.join(workdir, "summary.json"), "w", encoding="utf-8") as fh:
        json.dump(s, fh, indent=2)
    plot_modes(os.path.join(workdir, "visualization.png"), res, s)
    print(text, flush=True)
    return {"message": (f"{setup.graph.n} nodes, {f.modes} modes, {f.timesteps} steps, {f.trials} trials: waves "
                        f"{100 * s['detection']:.1f}%, rotation "
                        f"{plus_minus(s['rotation_mean'], s['rotation_std'], '.0f')} deg, "
                        f"CV {fmt(100 * s['cv'], '.1f')}%, {s['trials_per_s']:.1f} trials/s; "
                        f"{os.path.join(workdir, 'table.md')}"), "summary": s}


def run_scaling(config, workdir: str) -> dict:
    f, s = config.field, config.field.scaling
    points = [("nodes", int(n), int(s.base_timesteps)) for n in s.nodes]
    points += [("timesteps", int(s.base_nodes), int(t)) for t in s.timesteps]
    rows, summaries = [], []
    done = {}
    for i, (varied, nodes, steps) in enumerate(points):
        if (nodes, steps) not in done:  # the base point is on both axes: run it once
            graph = mode_graph(f, nodes)
            setup = mode_setup(graph, min(f.modes, graph.n), f.eigen)
            res = run_mode_trials(setup, f, seed=config.seed, timesteps=steps, trials=s.trials,
                                  desc=f"[{i + 1}/{len(points)}] N={graph.n} T={steps}")
            sm = summarize_modes(res, steps)
            sm.update(nodes=graph.n, modes=int(setup.eigenvalues.shape[0]), timesteps=steps,
                      mean_distance=setup.mean_distance, distance_over_20=setup.mean_distance / 20)
            done[(nodes, steps)] = sm
        summaries.append(dict(done[(nodes, steps)], varied=varied))
    header = ["varied", "nodes", "modes", "timesteps", "trials", "rotation_mean", "rotation_std", "rotation_per_step",
              "cv", "detection", "wave_speed", "mean_distance", "overflow", "C_mean"]
    for sm in summaries:
        rows.append([sm[k] if k != "trials" else sm["trials"] for k in header])
    write_csv(os.path.join(workdir, "scaling.csv"), header, rows)

    by = {v: [sm for sm in summaries if sm["varied"] == v] for v in ("nodes", "timesteps")}
    fits = {
        "rotation_vs_nodes": loglog_slope([x["nodes"] for x in by["nodes"]],
                                           [x["rotation_mean"] for x in by["nodes"]]),
        "rotation_vs_timesteps": loglog_slope([x["timesteps"] - 1 for x in by["timesteps"]],
                                               [x["rotation_mean"] for x in by["timesteps"]]),
        "cv_vs_nodes": loglog_slope([x["nodes"] for x in by["nodes"]], [x["cv"] for x in by["nodes"]]),
        "cv_vs_timesteps": loglog_slope([x["timesteps"] for x in by["timesteps"]], [x["cv"] for x in by["timesteps"]]),
        "speed_vs_nodes": loglog_slope([x["nodes"] for x in by["nodes"]], [x["wave_speed"] for x in by["nodes"]]),
    }
    headers = ["varied", "nodes", "timesteps", "trials", "mean rotation (°)", "° per step", "CV", "wave detection",
               "wave speed", "mean distance / 20", "overflowed"]
    trows = [[sm["varied"], sm["nodes"], sm["timesteps"], sm["trials"],
              plus_minus(sm["rotation_mean"], sm["rotation_std"], ".0f"),
              fmt(sm["rotation_per_step"]), f"{fmt(100 * sm['cv'], '.1f')}%", f"{100 * sm['detection']:.0f}%",
              fmt(sm["wave_speed"], ".3f"), f"{sm['distance_over_20']:.3f}", f"{100 * sm['overflow']:.0f}%"]
             for sm in summaries]
    fit_rows = [["rotation ∝ N^a (T fixed)", fmt(fits["rotation_vs_nodes"], ".3f")],
                ["rotation ∝ (T-1)^b (N fixed)", fmt(fits["rotation_vs_timesteps"], ".3f")],
                ["CV ∝ N^c (T fixed)", fmt(fits["cv_vs_nodes"], ".3f")],
                ["CV ∝ T^d (N fixed)", fmt(fits["cv_vs_timesteps"], ".3f")],
                ["wave speed ∝ N^e (T fixed)", fmt(fits["speed_vs_nodes"], ".3f")]]
    text = (markdown_table(headers, trows) + "\n\n" + markdown_table(["log-log fit", "exponent"], fit_rows) +
            f"\n\nIC types: {'trial % 4' if f.seed_faithful else 'drawn at random'}; modes = min({f.modes}, nodes).\n")
    with open(os.path.join(workdir, "table.md"), "w", encoding="utf-8") as fh:
        fh.write(text)
    with open(os.path.join(workdir, "summary.json"), "w", encoding="utf-8") as fh:
        json.dump({"points": summaries, "fits": fits}, fh, indent=2)
    plot_scaling(os.path.join(workdir, "scaling.png"), by)
    print(text, flush=True)
    return {"message": (f"scaling over {len(points)} points: rotation ∝ "
                        f"N^{fmt(fits['rotation_vs_nodes'], '.2f')} at "
                        f"fixed T, ∝ T^{fmt(fits['rotation_vs_timesteps'], '.2f')} at fixed N; "
                        f"{os.path.join(workdir, 'table.md')}"), "fits": fits}


def run_hubs(config, workdir: str) -> dict:
    f, h, k = config.field, config.field.hubs, config.field.kuramoto
    points = [(n, st, fr) for n in h.nodes for st in h.strategies for fr in h.fractions]
    results, cache = [], {}
    kuramoto_keys = trial_keys(config.seed + 1, f.trial_seed, h.trials)
    for i, (n, strategy, fraction) in enumerate(points):
        base = G.barabasi_albert(int(n), int(h.ba_m), seed=f.graph_seed)
        # the intact graph's table shape holds every damaged graph (degrees only fall): one compile per size
        base_deg = base.degrees()
        width = D.table_width(base_deg)
        n_hubs, hub_width = int((base_deg > width).sum()), int(base_deg.max()) - width
        removed = int(n * fraction)
        fkey = (n, fraction if removed else 0.0, strategy if removed else "none")
        if fkey in cache:  # 0% removal is the same graph for every strategy
            results.append(dict(cache[fkey], strategy=strategy, fraction=fraction))
            continue
        damaged = G.remove_nodes(base, fraction, strategy, seed=f.graph_seed)
        lcc = G.largest_component(damaged)
        desc = f"[{i + 1}/{len(points)}] BA N={n} {strategy} {100 * fraction:.0f}%"
        row = {"nodes": int(n), "strategy": strategy, "fraction": fraction, "removed": base.n - damaged.n,
               "lcc": lcc.n, "lcc_fraction": lcc.n / base.n}
        if lcc.n >= h.modes:
            # every damaged graph is padded to the intact size: one compiled program per graph size, not per point
            setup = mode_setup(lcc, int(h.modes), f.eigen)
            res = run_mode_trials(setup, f, seed=config.seed, timesteps=h.timesteps, trials=h.trials, desc=desc,
                                  pad_to=base.n)
            sm = summarize_modes(res, h.timesteps)
            row.update(detection=sm["detection"], rotation_mean=sm["rotation_mean"], rotation_std=sm["rotation_std"],
                       C=res["C_mean"], overflow=sm["overflow"])
            coupling = G.graph_coupling(lcc, pad_nodes=base.n, width=width, pad_hubs=n_hubs, pad_hub_width=hub_width)
            extras = {"mask": jnp.asarray(np.arange(base.n) < lcc.n, jnp.float32)}
            kres = run_kuramoto_points(coupling, extras, kuramoto_static(k, base.n, 0), kuramoto_keys,
                                       np.full(h.trials, h.kuramoto_coupling, np.float32), k.batch, False, desc,
                                       shard=f.shard_trials)
            row.update(R=kres["R_mean"])
        cache[fkey] = row
        results.append(row)

    intact = {n: next(r for r in results if r["nodes"] == n and r["removed"] == 0) for n in h.nodes}
    header = ["nodes", "strategy", "fraction", "removed", "lcc", "lcc_fraction", "detection", "rotation_mean",
              "rotation_std", "C_mean", "C_std", "delta_C", "R_mean", "R_std", "delta_R", "overflow"]
    rows, trows = [], []
    for r in results:
        c, rr = r.get("C", np.array([np.nan])), r.get("R", np.array([np.nan]))
        c0, r0 = intact[r["nodes"]].get("C", np.array([np.nan])), intact[r["nodes"]].get("R", np.array([np.nan]))
        dc, dr = float(np.nanmean(c) - np.nanmean(c0)), float(np.nanmean(rr) - np.nanmean(r0))
        rows.append([r["nodes"], r["strategy"], r["fraction"], r["removed"], r["lcc"], r["lcc_fraction"],
                     r.get("detection", float("nan")), r.get("rotation_mean", float("nan")),
                     r.get("rotation_std", float("nan")), *mean_std(c), dc, *mean_std(rr), dr, r.get("overflow", float("nan"))])
        trows.append([f"{r['nodes']} {r['strategy']}", f"{100 * r['fraction']:.0f}%", r["removed"],
                      f"{100 * r['lcc_fraction']:.1f}%", f"{100 * r.get('detection', float('nan')):.0f}%",
                      plus_minus(r.get("rotation_mean"), r.get("rotation_std"), ".0f"),
                      plus_minus(float(np.nanmean(c)), rows[-1][10], ".4f"), f"{dc:+.4f}",
                      plus_minus(float(np.nanmean(rr)), rows[-1][13], ".3f"), f"{dr:+.3f}"])
    write_csv(os.path.join(workdir, "hubs.csv"), header, rows)
    text = markdown_table(["BA graph, removal", "removed", "nodes", "largest component", "wave detection",
                           "rotation (°)", "C(t)", "ΔC vs intact", f"Kuramoto R (K={h.kuramoto_coupling})", "ΔR"],
                          trows) + (f"\n\nMode model on the largest component ({h.modes} modes, {h.timesteps} steps, "
                                    f"{h.trials} trials, IC types {'trial % 4' if f.seed_faithful else 'at random'}, "
                                    f"spectral-layout coordinates); Kuramoto on the same component ({k.integrator}, "
                                    f"dt={k.dt}, {k.steps} steps, ω ~ {k.omega_dist}({k.omega_mean}, "
                                    f"{k.omega_width})), R averaged over the second half.\n")
    with open(os.path.join(workdir, "table.md"), "w", encoding="utf-8") as fh:
        fh.write(text)
    plot_hubs(os.path.join(workdir, "hubs.png"), rows, h)
    print(text, flush=True)
    return {"message": f"hub vulnerability over {len(points)} points; {os.path.join(workdir, 'table.md')}"}


def mean_field_theory(k, ks) -> np.ndarray | None:
    """R(K) of the infinite all-to-all model with the sweep's frequencies (wavejax.field.theory): the
    self-consistent branch without a phase lag, the Ott–Antonsen steady state with one (Lorentzian frequencies
    only); None where no closed theory applies (inertia, a lag with other frequencies, identical frequencies)."""
    if k.inertia or k.omega_dist == "constant" or (k.phase_lag and k.omega_dist != "lorentzian"):
        return None
    if k.phase_lag:
        return np.array([T.oa_steady_r(float(x), k.omega_width, k.phase_lag) for x in ks])
    g = T.density(k.omega_dist, k.omega_mean, k.omega_width, k.omega_separation)
    return np.asarray(T.self_consistent_r(np.asarray(ks, np.float64), g), np.float64)


def run_coupling(config, workdir: str) -> dict:
    f, k = config.field, config.field.kuramoto
    if k.dtype == "float64":
        jax.config.update("jax_enable_x64", True)  # before any of the sweep's arrays exist
    ks = np.round(np.linspace(k.k_min, k.k_max, int(k.k_count)), 6)
    keys = trial_keys(config.seed, f.trial_seed, int(k.trials))
    run_keys = np.tile(keys, (len(ks), 1))  # the same initial phases and frequencies at every K (common random numbers)
    run_k = np.repeat(ks, int(k.trials))
    summary, rows = {}, []
    for gi, kind in enumerate(k.graphs):
        coupling, eigen, side, n = kuramoto_graph(kind, f)
        res = run_kuramoto_points(coupling, eigen, kuramoto_static(k, n, side), run_keys, run_k, int(k.batch),
                                  f.progress, f"[{gi + 1}/{len(k.graphs)}] {kind} N={n}", shard=f.shard_trials)
        res = {name: v.reshape((len(ks), int(k.trials)) + v.shape[1:]) for name, v in res.items()}
        significant = res["wave_p"] < k.alpha
        detected = significant & (res["wave_score"] >= k.wave_min_score)
        theory = mean_field_theory(k, ks) if kind == "mean_field" else None
        summary[kind] = {"n": n, "side": side, "res": res, "detected": detected, "theory": theory}
        for i, kv in enumerate(ks):
            sp = np.where(detected[i], res["wave_speed"][i], np.nan)
            rows.append([kind, n, float(kv), int(k.trials), *mean_std(res["R_mean"][i]),
                         float(n * np.mean(res["R_std"][i] ** 2)), *mean_std(res["C_mean"][i]), *mean_std(res["xi_mean"][i]),
                         float(np.mean(significant[i])) if side else float("nan"),
                         float(np.mean(detected[i])) if side else float("nan"), *mean_std(res["wave_score"][i]),
                         float(np.nanmedian(sp)) if np.isfinite(sp).any() else float("nan"),
                         float(theory[i]) if theory is not None else float("nan")])
    header = ["graph", "nodes", "K", "trials", "R_mean", "R_sd_trials", "chi_N_varR", "C_mean", "C_sd_trials",
              "xi_mean", "xi_sd_trials", "wave_significant_fraction", "wave_detected_fraction", "wave_score_mean",
              "wave_score_sd", "wave_speed_median", "R_theory"]
    write_csv(os.path.join(workdir, "coupling.csv"), header, rows)

    def pct(x):
        return f"{100 * x:.0f}%" if math.isfinite(x) else "n/a"

    trows = [[r[0], f"{r[2]:.2f}", plus_minus(r[4], r[5], ".3f"), fmt(r[6], ".2f"), plus_minus(r[7], r[8], ".4f"),
              plus_minus(r[9], r[10], ".2f"), plus_minus(r[13], r[14], ".3f"), pct(r[11]), pct(r[12]), fmt(r[15], ".3f")]
             for r in rows]
    peaks = []
    for kind, sm in summary.items():
        res = sm["res"]
        r_mean = res["R_mean"].mean(axis=1)
        chi = sm["n"] * (res["R_std"] ** 2).mean(axis=1)
        c_mean = np.nanmean(res["C_mean"], axis=1) if np.isfinite(res["C_mean"]).any() else None
        xi = np.nanmean(res["xi_mean"], axis=1) if np.isfinite(res["xi_mean"]).any() else None
        k_half = crossing(ks, r_mean, 0.5)
        peaks.append([kind, fmt(k_half, ".2f"), f"{ks[np.argmax(chi)]:.2f}",
                      f"{ks[np.nanargmax(c_mean)]:.2f}" if c_mean is not None else "n/a",
                      f"{ks[np.nanargmax(xi)]:.2f} (ξ={np.nanmax(xi):.1f})" if xi is not None else "n/a"])
    note = (f"Kuramoto: {k.integrator}, dt={k.dt}, {k.steps} steps, ω ~ {k.omega_dist}(mean {k.omega_mean}, width "
            f"{k.omega_width}" + (f", separation {k.omega_separation}" if k.omega_dist.startswith("bimodal") else "")
            + f"), noise σ={k.noise_std}"
            + (f", phase lag α={k.phase_lag}" if k.phase_lag else "")
            + (f", inertia m={k.inertia}, damping γ={k.damping}" if k.inertia else "")
            + f", {k.dtype}, θ_0 uniform; R, C(t) and ξ averaged over the second half of "
            f"the records (every {k.record_every} steps), mean ± sd over {k.trials} trials (same θ_0, ω at every "
            f"K). "
            f"χ = N·var_t(R). Plane waves (periodic lattices): ρ² = the phase variance the best plane wave "
            f"(k ≠ 0) explains in the final phases, tested against {k.surrogates} shuffled surrogates (p < "
            f"{k.alpha}: 'beats shuffle'); a wave is detected when it also explains ρ² ≥ {k.wave_min_score}; "
            f"speed = |mean dθ/dt| / |k| (median over detected trials).")
    mf = summary.get("mean_field", {}).get("theory")
    if mf is not None:
        kc = T.oa_critical_coupling(k.omega_width, k.phase_lag) if k.phase_lag else T.kc(
            k.omega_dist, k.omega_width, k.omega_mean, k.omega_separation)
        note += (f" Mean-field theory (N → ∞, wavejax/field/theory.py; the line in coupling.png): K_c = {kc:.3f}; "
                 "R(K) at " + ", ".join(f"K={x:g}: {r:.3f}" for x, r in zip(ks[:: max(1, len(ks) // 5)],
                                                                         mf[:: max(1, len(ks) // 5)])) + ".")
    text = (markdown_table(["graph", "K", "R", "χ", "C(t)", "correlation length ξ", "best plane wave ρ²",
                            "beats shuffle", "plane waves", "wave speed"], trows)
            + "\n\n" + markdown_table(["graph", "K where R = 0.5", "K at χ peak", "K at C(t) peak", "K at ξ peak"],
                                      peaks) + "\n\n" + note + "\n")
    with open(os.path.join(workdir, "table.md"), "w", encoding="utf-8") as fh:
        fh.write(text)
    plot_coupling(os.path.join(workdir, "coupling.png"), ks, summary)
    print(text, flush=True)
    return {"message": f"coupling sweep over {len(ks)} K values x {k.trials} trials on {', '.join(k.graphs)}; "
                       f"{os.path.join(workdir, 'table.md')}"}


RUNNERS = {"modes": run_modes, "scaling": run_scaling, "hubs": run_hubs, "coupling": run_coupling}


DONE_FILE = "done.json"


def run_task(config, workdir: str) -> dict:
    """Runs config.field.experiment into workdir (config.json, CSV, table.md, plots) and returns its summary. A
    finished run with the same settings is not recomputed: its table is printed again."""
    rundir = RunDir(workdir, "field", ("field",))
    done = read_json(rundir.file(DONE_FILE), "the finished run's summary") if rundir.check(config) else None
    rundir.acquire(config, jax.process_index())
    try:
        if done is not None:
            if os.path.exists(rundir.file("table.md")):
                with open(rundir.file("table.md"), encoding="utf-8") as fh:
                    print(fh.read(), flush=True)
            return {"message": f"{done['message']} (finished earlier; nothing recomputed)", "summary": done}
        summary = RUNNERS[config.field.experiment](config, workdir)
        write_atomic(rundir.file(DONE_FILE), json.dumps({"message": summary["message"]}, indent=2))
        return summary
    finally:
        rundir.release()
