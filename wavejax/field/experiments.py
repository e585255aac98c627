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

import csv
import dataclasses
import functools
import json
import math
import os
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from wavejax.errors import ConfigError
from wavejax.field import dynamics as D
from wavejax.field import graphs as G
from wavejax.field import metrics as M
from wavejax.parallel.sharding import BatchSplit
from wavejax.rundir import RunDir, check_interrupted, read_json, write_atomic

EXPERIMENTS = ("modes", "scaling", "hubs", "coupling")
KURAMOTO_GRAPHS = (*G.KINDS, "mean_field")
KURAMOTO_IMPLS = ("xla", "pallas")

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


# == config ========================================================================================================

def default_field_config() -> ml_collections.ConfigDict:
    """config.field: the small config's sizes with the sound settings (see configs/field.py for the presets)."""
    f = ml_collections.ConfigDict()
    f.experiment = "modes"  # modes | scaling | hubs | coupling
    f.seed_faithful = False  # True: IC type = trial % 4 and random C(t) phases (the original)
    f.graph = "lattice"  # modes/scaling graph: lattice (the original) | small_world | scale_free | modular
    f.nodes = 1000  # lattices: side floor(sqrt(nodes)) (1000 -> 31 x 31 = 961)
    f.periodic = True
    f.modes = 200  # K smallest Laplacian eigenmodes
    f.timesteps = 1000  # T states per trial, a_0 included (T - 1 steps)
    f.trials = 100
    f.trial_seed = 42  # trial t draws from fold_in(PRNGKey(seed), trial_seed + t)
    f.diffusion_rate = 0.05  # decay exp(-rate * lambda)
    f.cubic = 0.01
    f.noise_std = 0.02
    f.max_lag = 20  # lags 1 .. min(max_lag, T // 10) - 1
    f.eigen = "auto"  # auto | lattice (closed form) | dense (float64 eigh) | sparse (eigsh): G.laplacian_eigenmodes
    f.block = 50  # steps per scan block: statistics are streamed, memory does not grow with timesteps
    f.trial_batch = 50  # trials per jitted call (one progress-bar step)
    f.shard_trials = True  # split each call's trials over the local devices (rounded up to a multiple of them)
    f.reported = ""  # print the original's reported row for this config name next to ours (small|medium|large)
    f.progress = True
    # graph parameters for non-lattice graphs (modes/scaling/coupling)
    f.ws_k = 6
    f.ws_p = 0.1
    f.ba_m = 3
    f.n_modules = 4
    f.p_in = 0.3
    f.p_out = 0.01
    f.graph_seed = 0

    f.scaling = ml_collections.ConfigDict()
    f.scaling.nodes = (256, 529, 961, 1600, 2500, 4900)  # varied at timesteps = base_timesteps
    f.scaling.timesteps = (250, 500, 1000, 2000, 5000)  # varied at nodes = base_nodes
    f.scaling.base_nodes = 1000
    f.scaling.base_timesteps = 1000
    f.scaling.trials = 40

    f.hubs = ml_collections.ConfigDict()
    f.hubs.nodes = (1000,)  # Barabási–Albert sizes (the spec: 1k, 5k, 10k)
    f.hubs.ba_m = 3
    f.hubs.fractions = (0.0, 0.05, 0.10, 0.15, 0.20, 0.25)
    f.hubs.strategies = G.REMOVAL_STRATEGIES
    f.hubs.trials = 20
    f.hubs.modes = 100
    f.hubs.timesteps = 1000
    f.hubs.kuramoto_coupling = 1.0  # K of the Kuramoto run on each damaged graph (same dynamics settings below)

    f.kuramoto = ml_collections.ConfigDict()
    f.kuramoto.graphs = ("lattice", "small_world", "scale_free", "mean_field")
    f.kuramoto.nodes = 1024  # lattice 32 x 32
    f.kuramoto.k_min = 0.1
    f.kuramoto.k_max = 2.0
    f.kuramoto.k_count = 20
    f.kuramoto.trials = 8
    f.kuramoto.dt = 0.05
    f.kuramoto.steps = 4000
    f.kuramoto.record_every = 50
    f.kuramoto.integrator = "rk4"
    f.kuramoto.omega_dist = "normal"
    f.kuramoto.omega_mean = 0.0
    f.kuramoto.omega_width = 0.5
    f.kuramoto.noise_std = 0.0
    f.kuramoto.surrogates = 99
    f.kuramoto.alpha = 0.05
    f.kuramoto.wave_min_score = 0.5  # a plane wave must also explain this fraction of the phase variance (ρ²)
    f.kuramoto.modes = 100  # eigenmodes for C(t) of the phase field
    f.kuramoto.batch = 32  # (K, trial) runs per jitted call
    f.kuramoto.impl = "xla"  # xla | pallas (lattices: fused steps, pallas_kernels/kuramoto_lattice.py; GPU untimed)
    return f


def _req(cond: bool, message: str) -> None:
    if not cond:
        raise ConfigError(message)


def _check_lattice_nodes(key: str, nodes: int, periodic: bool = True) -> None:
    _req(G.lattice_side(nodes) >= (3 if periodic else 2),
         f"{key} must give a lattice side of at least 3 (nodes >= 9), got {nodes}.")


def validate_task(config) -> None:
    """Raises ConfigError (one sentence) for any field setting that cannot work."""
    _req("field" in config, "a field task needs a field section; start from configs/field.py.")
    f = config.field
    _req(f.experiment in EXPERIMENTS, f"field.experiment must be one of {EXPERIMENTS}, got {f.experiment!r}.")
    _req(f.graph in G.KINDS, f"field.graph must be one of {G.KINDS}, got {f.graph!r}.")
    _req(f.eigen in G.EIGEN_METHODS, f"field.eigen must be one of {G.EIGEN_METHODS}, got {f.eigen!r}.")
    _req(f.eigen != "lattice" or f.graph == "lattice",
         "field.eigen='lattice' (closed form) needs field.graph='lattice'.")
    for key in ("trials", "trial_batch", "block", "timesteps", "max_lag"):
        _req(f[key] >= 1, f"field.{key} must be >= 1, got {f[key]}.")
    _req(f.timesteps >= 2, f"field.timesteps must be >= 2 (the initial state and one step), got {f.timesteps}.")
    for key in ("diffusion_rate", "cubic", "noise_std"):
        _req(math.isfinite(f[key]) and f[key] >= 0, f"field.{key} must be >= 0, got {f[key]}.")
    _req(f.reported in ("", *ORIGINAL_REPORTED),
         f"field.reported must be '' or one of {tuple(ORIGINAL_REPORTED)}, got {f.reported!r}.")
    if f.experiment in ("modes", "scaling"):
        n = _graph_nodes(f.graph, f.nodes)
        if f.graph == "lattice":
            _check_lattice_nodes("field.nodes", f.nodes, f.periodic)
        else:
            _check_graph_params(f, f.nodes, "field")
        _req(2 <= f.modes <= n, f"field.modes must be between 2 and the graph's {n} nodes, got {f.modes}.")
    if f.experiment == "scaling":
        s = f.scaling
        _req(len(s.nodes) >= 1 and len(s.timesteps) >= 1,
             "field.scaling.nodes and field.scaling.timesteps need values.")
        for n in (*s.nodes, s.base_nodes):
            _check_lattice_nodes("every field.scaling node count", n, f.periodic)
        for t in (*s.timesteps, s.base_timesteps):
            _req(t >= 2, f"every field.scaling timestep count must be >= 2, got {t}.")
        _req(s.trials >= 2, f"field.scaling.trials must be >= 2 (a CV needs two), got {s.trials}.")
        _req(f.graph == "lattice", "the scaling study runs on lattices; set field.graph='lattice'.")
    if f.experiment == "hubs":
        h = f.hubs
        _req(len(h.nodes) >= 1, "field.hubs.nodes needs at least one graph size.")
        for n in h.nodes:
            _req(n > h.ba_m + 1 and h.ba_m >= 1,
                 f"field.hubs.nodes must exceed field.hubs.ba_m + 1, got {n} with m={h.ba_m}.")
        _req(len(h.fractions) >= 1 and all(0 <= x < 1 for x in h.fractions),
             f"field.hubs.fractions must be in [0, 1), got {tuple(h.fractions)}.")
        bad = [s for s in h.strategies if s not in G.REMOVAL_STRATEGIES]
        _req(len(h.strategies) >= 1 and not bad,
             f"field.hubs.strategies must be among {G.REMOVAL_STRATEGIES}, got {tuple(h.strategies)}.")
        _req(h.trials >= 1 and h.modes >= 2 and h.timesteps >= 2,
             "field.hubs.trials must be >= 1, field.hubs.modes >= 2 and field.hubs.timesteps >= 2.")
        _validate_kuramoto(f.kuramoto, need_graphs=False)
    if f.experiment == "coupling":
        _validate_kuramoto(f.kuramoto, need_graphs=True)
        for kind in f.kuramoto.graphs:
            if kind == "lattice":
                _check_lattice_nodes("field.kuramoto.nodes", f.kuramoto.nodes, f.periodic)
            elif kind != "mean_field":
                _check_graph_params(f, f.kuramoto.nodes, "field.kuramoto")
        n_min = min(_graph_nodes(k, f.kuramoto.nodes) for k in f.kuramoto.graphs)
        _req(2 <= f.kuramoto.modes <= n_min,
             f"field.kuramoto.modes must be between 2 and the smallest graph's {n_min} nodes, got {f.kuramoto.modes}.")


def _graph_nodes(kind: str, nodes: int) -> int:
    return G.lattice_side(nodes) ** 2 if kind == "lattice" else int(nodes)


def _check_graph_params(f, nodes: int, where: str) -> None:
    _req(f.ws_k % 2 == 0 and 0 < f.ws_k < nodes,
         f"field.ws_k must be even and between 0 and {where}.nodes, got {f.ws_k}.")
    _req(0 <= f.ws_p <= 1, f"field.ws_p must be in [0, 1], got {f.ws_p}.")
    _req(1 <= f.ba_m < nodes, f"field.ba_m must be between 1 and {where}.nodes - 1, got {f.ba_m}.")
    _req(1 <= f.n_modules <= nodes, f"field.n_modules must be between 1 and {where}.nodes, got {f.n_modules}.")
    _req(0 <= f.p_out <= 1 and 0 <= f.p_in <= 1, "field.p_in and field.p_out must be probabilities in [0, 1].")


def _validate_kuramoto(k, need_graphs: bool) -> None:
    if need_graphs:
        bad = [g for g in k.graphs if g not in KURAMOTO_GRAPHS]
        _req(len(k.graphs) >= 1 and not bad,
             f"field.kuramoto.graphs must be among {KURAMOTO_GRAPHS}, got {tuple(k.graphs)}.")
        _req(k.nodes >= 2, f"field.kuramoto.nodes must be >= 2, got {k.nodes}.")
        _req(k.k_count >= 1 and k.k_min <= k.k_max,
             f"field.kuramoto needs k_count >= 1 and k_min <= k_max, got {k.k_count}, {k.k_min}, {k.k_max}.")
    _req(k.integrator in D.INTEGRATORS,
         f"field.kuramoto.integrator must be one of {D.INTEGRATORS}, got {k.integrator!r}.")
    _req(k.omega_dist in D.OMEGA_DISTRIBUTIONS,
         f"field.kuramoto.omega_dist must be one of {D.OMEGA_DISTRIBUTIONS}, got {k.omega_dist!r}.")
    _req(math.isfinite(k.dt) and k.dt > 0, f"field.kuramoto.dt must be > 0, got {k.dt}.")
    for key in ("steps", "record_every", "trials", "surrogates", "batch"):
        _req(k[key] >= 1, f"field.kuramoto.{key} must be >= 1, got {k[key]}.")
    for key in ("omega_width", "noise_std"):
        _req(math.isfinite(k[key]) and k[key] >= 0, f"field.kuramoto.{key} must be >= 0, got {k[key]}.")
    _req(0 < k.alpha < 1, f"field.kuramoto.alpha must be in (0, 1), got {k.alpha}.")
    _req(k.impl in KURAMOTO_IMPLS, f"field.kuramoto.impl must be one of {KURAMOTO_IMPLS}, got {k.impl!r}.")
    _req(k.impl == "xla" or (need_graphs and tuple(k.graphs) == ("lattice",)),
         "field.kuramoto.impl='pallas' runs lattices only; set field.kuramoto.graphs=('lattice',) in the coupling "
         "experiment or use impl='xla'.")
    _req(0 < k.wave_min_score <= 1, f"field.kuramoto.wave_min_score must be in (0, 1], got {k.wave_min_score}.")
    _req(1 / (1 + k.surrogates) < k.alpha,
         f"field.kuramoto.surrogates={k.surrogates} cannot reach p < alpha={k.alpha}; use at least "
         f"{math.ceil(1 / k.alpha)} surrogates.")


# == the original's experiment: setup and trials ===================================================================

@dataclasses.dataclass
class ModeSetup:
    """What every trial of one graph shares: its eigenmodes, node coordinates and mean pairwise distance."""

    graph: G.Graph
    eigenvalues: np.ndarray  # [K]
    eigenvectors: np.ndarray  # [N, K]
    positions: np.ndarray  # [N, 2]
    mean_distance: float
    seconds: float

    def arrays(self, pad_to: int | None = None) -> dict:
        """The jitted trial's inputs. pad_to > N appends zero rows (eigenvectors, positions) and a node mask, so
        graphs of different sizes (the hub experiment's damaged graphs) share one compiled program."""
        n = self.graph.n
        psi, pos = np.asarray(self.eigenvectors, np.float32), np.asarray(self.positions, np.float32)
        out = {"eigenvalues": jnp.asarray(self.eigenvalues, jnp.float32), "node_sums": jnp.asarray(psi.sum(axis=0)),
               "mean_distance": jnp.float32(self.mean_distance), "n_nodes": jnp.float32(n)}
        if pad_to is not None:
            if pad_to < n:
                raise ValueError(f"cannot pad a graph of {n} nodes to {pad_to}")
            psi = np.pad(psi, ((0, pad_to - n), (0, 0)))
            pos = np.pad(pos, ((0, pad_to - n), (0, 0)))
            out["mask"] = jnp.asarray(np.arange(pad_to) < n, jnp.float32)
        out.update(eigenvectors=jnp.asarray(psi), positions=jnp.asarray(pos))
        return out


def mode_setup(graph: G.Graph, modes: int, eigen: str = "auto") -> ModeSetup:
    """The graph's `modes` lowest Laplacian eigenmodes in the pinned basis of `G.laplacian_eigenmodes` (auto: the
    closed form for lattices), node coordinates (a lattice's own, else a spectral layout from those modes) and their
    mean pairwise distance."""
    start = time.perf_counter()
    lam, psi = G.laplacian_eigenmodes(graph, modes, eigen)
    positions = G.layout_positions(graph, None if graph.positions is not None else psi)
    return ModeSetup(graph, lam, psi, positions, G.mean_pairwise_distance(positions), time.perf_counter() - start)


def mode_trial(key, ic_type, arrays: dict, *, timesteps: int, n_lags: int, block: int) -> dict:
    """One trial of the original experiment with its metrics streamed block by block (memory O(n_lags K)).

    arrays: ModeSetup.arrays() plus the model constants rate, cubic, noise_std and the flag random_phases (C(t)
    fed uniform random phases, as the original), all traced, so one compile serves any values. Outputs: rotation
    (degrees), correlations [n_lags], has_wave, half_idx, wave_speed, blowup_step (first step whose state is not
    finite, -1 if none), C_mean (over blocks whose C is finite, NaN if none), C_last.
    """
    lam, psi, node_sums = arrays["eigenvalues"], arrays["eigenvectors"], arrays["node_sums"]
    ic_key, noise_key, phase_key = jax.random.split(key, 3)
    x = D.initial_pattern(ic_type, ic_key, arrays["positions"], arrays.get("mask"))
    a0 = x @ psi
    step = D.mode_stepper(D.mode_decay(lam, arrays["rate"]), noise_key, arrays["cubic"], arrays["noise_std"])
    never = jnp.int32(timesteps)

    def observe(acc, states, t_first, n_valid):
        rot, lags, blowup, last = acc
        bad = ~jnp.isfinite(states).all(axis=1)  # rows after n_valid repeat the final state: no new information
        blowup = jnp.minimum(blowup, jnp.where(bad.any(), t_first + jnp.argmax(bad).astype(jnp.int32), never))
        current = states[n_valid - 1]
        prev = jnp.where(n_valid >= 2, states[jnp.maximum(n_valid - 2, 0)], last)
        # the original fills the phases with uniform noise when none are given; else the real field's own: 0 or pi
        noise_phases = 2 * math.pi * jax.random.uniform(jax.random.fold_in(phase_key, t_first), lam.shape, lam.dtype)
        phases = jnp.where(arrays["random_phases"], noise_phases, jnp.where(current < 0, math.pi, 0.0))
        comps = M.consciousness_components(current**2, prev**2, lam, phases)
        acc = (M.rotation_update(rot, states), M.lag_sums_update(lags, states, node_sums, n_valid), blowup, current)
        return acc, M.consciousness_functional(comps)

    acc0 = (M.rotation_init(a0), M.lag_sums_init(a0, node_sums, n_lags),
            jnp.where(jnp.isfinite(a0).all(), never, jnp.int32(0)), a0)
    _, (rot, lags, blowup, _), c_records = D.scan_blocks(step, a0, acc0, observe, steps=timesteps - 1, block=block,
                                                        keep_states=True)
    corrs = M.lag_correlations_from_sums(lags, arrays["n_nodes"])
    has_wave, half_idx = M.wave_decision(corrs)
    finite_c = jnp.isfinite(c_records)
    return {
        "rotation": M.rotation_degrees(rot), "correlations": corrs, "has_wave": has_wave, "half_idx": half_idx,
        "wave_speed": M.wave_speed(arrays["mean_distance"], has_wave, half_idx),
        "blowup_step": jnp.where(blowup == never, -1, blowup),
        "C_mean": jnp.where(finite_c.any(), jnp.where(finite_c, c_records, 0).sum() / finite_c.sum(), jnp.nan),
        "C_last": c_records[-1],
    }


@functools.partial(jax.jit, static_argnames=("timesteps", "n_lags", "block"))
def mode_trials(keys, ic_types, arrays, **static):
    """mode_trial vmapped over a leading trial axis of keys [B, 2] and ic_types [B]."""
    return jax.vmap(lambda k, t: mode_trial(k, t, arrays, **static))(keys, ic_types)


@jax.jit
def _trial_keys(seed, trial_ids):
    return jax.vmap(lambda t: jax.random.fold_in(jax.random.PRNGKey(seed), t))(trial_ids)


def trial_keys(seed: int, trial_seed: int, trials: int) -> np.ndarray:
    """[trials, 2] uint32: trial t's key fold_in(PRNGKey(seed), trial_seed + t)."""
    return np.asarray(_trial_keys(jnp.uint32(seed), jnp.arange(trials, dtype=jnp.uint32) + jnp.uint32(trial_seed)))


def ic_assignment(trials: int, faithful: bool, seed: int, trial_seed: int) -> np.ndarray:
    """Initial-condition type per trial: trial % 4 (the original), or i.i.d. uniform over the four types."""
    if faithful:
        return np.arange(trials) % len(D.IC_TYPES)
    return np.random.default_rng([seed, trial_seed]).integers(0, len(D.IC_TYPES), size=trials)


def _progress(total: int, desc: str, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="trial", disable=not enabled, leave=False, dynamic_ncols=True)


def _padded_chunks(total: int, batch: int):
    """(start, stop, indices) of every chunk of `batch` trials; the last chunk's indices repeat its last trial so
    that every call has the compiled shape (the repeats are dropped)."""
    for start in range(0, total, batch):
        stop = min(start + batch, total)
        idx = np.arange(start, start + batch)
        yield start, stop, np.minimum(idx, stop - 1)


def run_mode_trials(setup: ModeSetup, f, *, seed: int, timesteps: int, trials: int, desc: str = "trials",
                    pad_to: int | None = None) -> dict:
    """All trials of one setup in chunks of f.trial_batch with a progress bar. Returns numpy arrays [trials, ...] plus
    the types, and timings: compile_s (the first chunk's compile) and run_s (all chunks after compiling)."""
    n_lags = M.n_wave_lags(timesteps, f.max_lag)
    # blocks of a multiple of n_lags steps let the lag sums run as L-row Gram blocks (metrics.lagged_dot_sums)
    block = n_lags * max(1, round(f.block / n_lags)) if n_lags else f.block
    static = dict(timesteps=int(timesteps), n_lags=n_lags, block=int(min(block, timesteps - 1)))
    keys = trial_keys(seed, f.trial_seed, trials)
    types = ic_assignment(trials, f.seed_faithful, seed, f.trial_seed)
    arrays = dict(setup.arrays(pad_to), rate=jnp.float32(f.diffusion_rate), cubic=jnp.float32(f.cubic),
                  noise_std=jnp.float32(f.noise_std), random_phases=jnp.bool_(f.seed_faithful))
    split = BatchSplit(f.shard_trials)
    batch = split.batch_size(min(int(f.trial_batch), trials))
    arrays = split.replicate(arrays)
    start = time.perf_counter()
    _, _, idx0 = next(_padded_chunks(trials, batch))  # the first call's rows, padded as every call is
    compiled = mode_trials.lower(*split.put(keys[idx0], types[idx0].astype(np.int32)), arrays, **static).compile()
    compile_s = time.perf_counter() - start
    parts = []
    start = time.perf_counter()
    with _progress(trials, desc, f.progress) as bar:
        for lo, hi, idx in _padded_chunks(trials, batch):
            check_interrupted()
            out = jax.device_get(compiled(*split.put(keys[idx], types[idx].astype(np.int32)), arrays))
            parts.append({k: np.asarray(v)[: hi - lo] for k, v in out.items()})
            bar.update(hi - lo)
    run_s = time.perf_counter() - start
    result = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    result.update(ic_type=types, compile_s=compile_s, run_s=run_s, n_lags=n_lags)
    return result


def summarize_modes(res: dict, timesteps: int) -> dict:
    """The original's summary (detection rate, rotation mean ± std over finite trials, CV, mean speed of detected
    trials) plus the rate of non-finite (overflowed) trajectories and how often has_wave equals 'stayed finite'."""
    rot = res["rotation"].astype(np.float64)
    finite_rot = rot[np.isfinite(rot)]
    waves = res["has_wave"].astype(bool)
    stayed_finite = res["blowup_step"] < 0
    return {
        "trials": int(len(rot)), "detection": float(waves.mean()), "detected": int(waves.sum()),
        "rotation_mean": float(finite_rot.mean()) if len(finite_rot) else float("nan"),
        "rotation_std": float(finite_rot.std(ddof=1)) if len(finite_rot) > 1 else float("nan"),
        "rotation_n": int(len(finite_rot)),
        "rotation_per_step": float(finite_rot.mean() / (timesteps - 1)) if len(finite_rot) else float("nan"),
        "cv": M.coefficient_of_variation(rot),
        "wave_speed": float(res["wave_speed"][waves].mean()) if waves.any() else float("nan"),
        "overflow": float((~stayed_finite).mean()),
        "wave_equals_finite": float((waves == stayed_finite).mean()),
        "C_mean": float(np.nanmean(res["C_mean"])) if np.isfinite(res["C_mean"]).any() else float("nan"),
    }


# == Kuramoto trials ===============================================================================================

def kuramoto_trial(key, coupling_k, coupling, extras: dict, *, n: int, dt: float, steps: int, record_every: int,
                   integrator: str, noise_std: float, omega_dist: str, omega_mean: float, omega_width: float,
                   surrogates: int, lattice_side: int, impl: str = "xla") -> dict:
    """One Kuramoto run from uniform random phases. Records every record_every steps: R, C(t) of the phase field's
    eigenmode projection and (lattices) the correlation length; reports their means over the second half of the
    records, R's std there, and (lattices) the plane-wave test of the final phases with its phase speed."""
    k_theta, k_omega, k_noise, k_surr = jax.random.split(key, 4)
    theta0 = jax.random.uniform(k_theta, (n,), jnp.float32, -math.pi, math.pi)
    omega = D.natural_frequencies(k_omega, n, omega_dist, omega_mean, omega_width)
    psi, lam, mask = extras.get("eigenvectors"), extras.get("eigenvalues"), extras.get("mask")

    def field_modes(theta):
        return M.mode_projection(jnp.exp(1j * theta.astype(jnp.float32)), psi)

    def observe(power_prev, theta, t_first, n_valid):
        rec = {"R": M.order_parameter(theta, mask=mask)}
        if psi is not None:
            power, phases = field_modes(theta)
            rec["C"] = M.consciousness_functional(M.consciousness_components(power, power_prev, lam, phases))
            power_prev = power
        if lattice_side:
            rec["xi"] = M.correlation_length(theta.reshape(lattice_side, lattice_side))
        return power_prev, rec

    acc0 = field_modes(theta0)[0] if psi is not None else None
    theta, _, rec = D.kuramoto_run(theta0, omega, coupling_k, coupling, dt=dt, steps=steps, record_every=record_every,
                                   integrator=integrator, noise_std=noise_std, noise_key=k_noise, observe=observe,
                                   acc=acc0, impl=impl)
    half = rec["R"].shape[0] // 2
    out = {"R_mean": rec["R"][half:].mean(), "R_std": rec["R"][half:].std(), "R_final": rec["R"][-1],
           "R_trace": rec["R"]}
    nan = jnp.float32(jnp.nan)
    out["C_mean"] = rec["C"][half:].mean() if "C" in rec else nan
    out["xi_mean"] = rec["xi"][half:].mean() if "xi" in rec else nan
    if lattice_side:
        test = M.plane_wave_test(theta.reshape(lattice_side, lattice_side), k_surr, surrogates)
        rate = D.kuramoto_rhs(theta, omega, coupling_k, coupling)
        out.update(wave_score=test["score"], wave_p=test["p_value"],
                   wave_speed=M.phase_wave_speed(rate, test["ky"], test["kx"]))
    else:
        out.update(wave_score=nan, wave_p=nan, wave_speed=nan)
    return out


@functools.partial(jax.jit, static_argnames=("n", "dt", "steps", "record_every", "integrator", "noise_std",
                                             "omega_dist", "omega_mean", "omega_width", "surrogates", "lattice_side",
                                             "impl"))
def kuramoto_trials(keys, couplings, coupling, extras, **static):
    """kuramoto_trial vmapped over a leading axis of (key [B, 2], coupling K [B]) pairs."""
    return jax.vmap(lambda k, c: kuramoto_trial(k, c, coupling, extras, **static))(keys, couplings)


def kuramoto_static(k, n: int, lattice_side: int) -> dict:
    return dict(n=int(n), dt=float(k.dt), steps=int(k.steps), record_every=int(min(k.record_every, k.steps)),
                integrator=str(k.integrator), noise_std=float(k.noise_std), omega_dist=str(k.omega_dist),
                omega_mean=float(k.omega_mean), omega_width=float(k.omega_width), surrogates=int(k.surrogates),
                lattice_side=int(lattice_side), impl=str(k.impl))


def run_kuramoto_points(coupling, extras: dict, static: dict, keys: np.ndarray, couplings: np.ndarray, batch: int,
                        progress: bool, desc: str, shard: bool = True) -> dict:
    """Runs every (key, K) pair in chunks of `batch` (split over the local devices when `shard`) with a progress
    bar; numpy arrays [runs, ...]. The pallas path goes through shard_map: a sharded jit cannot split the kernel's
    custom call."""
    total = len(couplings)
    split = BatchSplit(shard)
    batch = split.batch_size(min(batch, total))
    coupling, extras = split.replicate((coupling, extras))
    call = functools.partial(kuramoto_trials, **static)
    if static.get("impl", "xla") == "pallas":
        call = split.per_device(call, n_split=2)
    parts = []
    with _progress(total, desc, progress) as bar:
        for lo, hi, idx in _padded_chunks(total, batch):
            check_interrupted()
            out = jax.device_get(call(*split.put(keys[idx], couplings[idx].astype(np.float32)), coupling, extras))
            parts.append({k: np.asarray(v)[: hi - lo] for k, v in out.items()})
            bar.update(hi - lo)
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


# == writing: CSV, markdown, plots =================================================================================

def markdown_table(headers, rows) -> str:
    """A markdown table, first column left-aligned, the rest right-aligned."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]

    def line(row):
        padded = (c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))
        return "| " + " | ".join(padded) + " |"

    rule = "|" + "|".join(":" + "-" * (w + 1) if i == 0 else "-" * (w + 1) + ":" for i, w in enumerate(widths)) + "|"
    return "\n".join([line(cells[0]), rule] + [line(r) for r in cells[1:]])


def _fmt(x, spec: str = ".2f") -> str:
    return "n/a" if x is None or (isinstance(x, float) and not math.isfinite(x)) else format(x, spec)


def _pm(mean, std, spec: str = ".1f") -> str:
    if mean is None or not math.isfinite(mean):
        return "n/a"
    if std is None or not math.isfinite(std):
        return format(mean, spec)
    return f"{format(mean, spec)} ± {format(std, spec)}"


def _write_csv(path: str, header, rows) -> None:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _device() -> str:
    d = jax.devices()[0]
    return f"{d.platform} ({d.device_kind})" if d.platform != "cpu" else f"cpu ({os.cpu_count()} cores)"


# == experiment: the original's configs ============================================================================

def _mode_graph(f, nodes: int | None = None) -> G.Graph:
    return G.build_graph(f.graph, int(nodes if nodes is not None else f.nodes), periodic=f.periodic, ws_k=f.ws_k,
                         ws_p=f.ws_p, ba_m=f.ba_m, modules=f.n_modules, p_in=f.p_in, p_out=f.p_out, seed=f.graph_seed)


def run_modes(config, workdir: str) -> dict:
    f = config.field
    setup = mode_setup(_mode_graph(f), f.modes, f.eigen)
    res = run_mode_trials(setup, f, seed=config.seed, timesteps=f.timesteps, trials=f.trials)
    s = summarize_modes(res, f.timesteps)
    s.update(nodes=setup.graph.n, modes=int(f.modes), timesteps=int(f.timesteps), setup_s=setup.seconds,
             compile_s=res["compile_s"], run_s=res["run_s"], trials_per_s=f.trials / res["run_s"],
             mean_distance=setup.mean_distance, seed_faithful=bool(f.seed_faithful), device=_device())

    header = ["trial", "wave_type", "ic_type", "rotation_angle", "has_wave", "wave_speed", "blowup_step", "C_mean",
              "corr_lag1", "corr_mean_lags1_5", "n_nodes", "n_modes", "timesteps"]
    rows = []
    for t in range(f.trials):
        c = res["correlations"][t]
        rows.append([t, int(res["ic_type"][t]), D.IC_TYPES[res["ic_type"][t]], float(res["rotation"][t]),
                     bool(res["has_wave"][t]), float(res["wave_speed"][t]), int(res["blowup_step"][t]),
                     float(res["C_mean"][t]), float(c[0]) if len(c) else "", float(np.mean(c[:5])) if len(c) else "",
                     setup.graph.n, f.modes, f.timesteps])
    _write_csv(os.path.join(workdir, "results.csv"), header, rows)

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
                        f"{_pm(s['rotation_mean'], s['rotation_std'], '.0f')} deg, "
                        f"CV {_fmt(100 * s['cv'], '.1f')}%, {s['trials_per_s']:.1f} trials/s; "
                        f"{os.path.join(workdir, 'table.md')}"), "summary": s}


def modes_table(s: dict, reported: str, faithful: bool) -> str:
    headers = ["run", "nodes", "modes", "timesteps", "trials", "wave detection", "mean rotation (°)", "° per step",
               "CV", "wave speed", "overflowed", "trial loop (s)", "trials/s"]
    rows = []
    if reported:
        r = ORIGINAL_REPORTED[reported]
        rows.append([f"original {reported} (reported, RTX 4070 Ti)", r["nodes"], r["modes"], r["timesteps"],
                     r["trials"], f"{100 * r['detection']:.1f}%", _pm(r["rotation_mean"], r["rotation_std"], ".2f"),
                     f"{r['rotation_mean'] / r['timesteps']:.2f}",
                     f"{100 * r['rotation_std'] / r['rotation_mean']:.1f}%",
                     f"{r['wave_speed']:.2f}", "n/a", f"{r['runtime_s']:.1f}", f"{r['trials_per_s']:.1f}"])
    label = "wavejax, " + ("faithful (type = trial % 4)" if faithful else "types drawn at random")
    rows.append([f"{label}, {s['device']}", s["nodes"], s["modes"], s["timesteps"], s["trials"],
                 f"{100 * s['detection']:.1f}% ({s['detected']}/{s['trials']})",
                 _pm(s["rotation_mean"], s["rotation_std"], ".2f") + ("" if s["rotation_n"] == s["trials"] else
                                                                      f" (n={s['rotation_n']})"),
                 _fmt(s["rotation_per_step"]), f"{_fmt(100 * s['cv'], '.1f')}%", _fmt(s["wave_speed"]),
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
                     _pm(float(rot.mean()) if len(rot) else None,
                         float(rot.std(ddof=1)) if len(rot) > 1 else None, ".0f"),
                     _fmt(float(c5.mean()) if len(c5) else None, ".3f")])
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


# == experiment: scaling with N and T varied separately ============================================================

def _loglog_slope(x, y) -> float:
    x, y = np.asarray(x, float), np.asarray(y, float)
    ok = np.isfinite(y) & (y > 0)
    if ok.sum() < 2:
        return float("nan")
    return float(np.polyfit(np.log(x[ok]), np.log(y[ok]), 1)[0])


def run_scaling(config, workdir: str) -> dict:
    f, s = config.field, config.field.scaling
    points = [("nodes", int(n), int(s.base_timesteps)) for n in s.nodes]
    points += [("timesteps", int(s.base_nodes), int(t)) for t in s.timesteps]
    rows, summaries = [], []
    done = {}
    for i, (varied, nodes, steps) in enumerate(points):
        if (nodes, steps) not in done:  # the base point is on both axes: run it once
            graph = _mode_graph(f, nodes)
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
    _write_csv(os.path.join(workdir, "scaling.csv"), header, rows)

    by = {v: [sm for sm in summaries if sm["varied"] == v] for v in ("nodes", "timesteps")}
    fits = {
        "rotation_vs_nodes": _loglog_slope([x["nodes"] for x in by["nodes"]],
                                           [x["rotation_mean"] for x in by["nodes"]]),
        "rotation_vs_timesteps": _loglog_slope([x["timesteps"] - 1 for x in by["timesteps"]],
                                               [x["rotation_mean"] for x in by["timesteps"]]),
        "cv_vs_nodes": _loglog_slope([x["nodes"] for x in by["nodes"]], [x["cv"] for x in by["nodes"]]),
        "cv_vs_timesteps": _loglog_slope([x["timesteps"] for x in by["timesteps"]], [x["cv"] for x in by["timesteps"]]),
        "speed_vs_nodes": _loglog_slope([x["nodes"] for x in by["nodes"]], [x["wave_speed"] for x in by["nodes"]]),
    }
    headers = ["varied", "nodes", "timesteps", "trials", "mean rotation (°)", "° per step", "CV", "wave detection",
               "wave speed", "mean distance / 20", "overflowed"]
    trows = [[sm["varied"], sm["nodes"], sm["timesteps"], sm["trials"],
              _pm(sm["rotation_mean"], sm["rotation_std"], ".0f"),
              _fmt(sm["rotation_per_step"]), f"{_fmt(100 * sm['cv'], '.1f')}%", f"{100 * sm['detection']:.0f}%",
              _fmt(sm["wave_speed"], ".3f"), f"{sm['distance_over_20']:.3f}", f"{100 * sm['overflow']:.0f}%"]
             for sm in summaries]
    fit_rows = [["rotation ∝ N^a (T fixed)", _fmt(fits["rotation_vs_nodes"], ".3f")],
                ["rotation ∝ (T-1)^b (N fixed)", _fmt(fits["rotation_vs_timesteps"], ".3f")],
                ["CV ∝ N^c (T fixed)", _fmt(fits["cv_vs_nodes"], ".3f")],
                ["CV ∝ T^d (N fixed)", _fmt(fits["cv_vs_timesteps"], ".3f")],
                ["wave speed ∝ N^e (T fixed)", _fmt(fits["speed_vs_nodes"], ".3f")]]
    text = (markdown_table(headers, trows) + "\n\n" + markdown_table(["log-log fit", "exponent"], fit_rows) +
            f"\n\nIC types: {'trial % 4' if f.seed_faithful else 'drawn at random'}; modes = min({f.modes}, nodes).\n")
    with open(os.path.join(workdir, "table.md"), "w", encoding="utf-8") as fh:
        fh.write(text)
    with open(os.path.join(workdir, "summary.json"), "w", encoding="utf-8") as fh:
        json.dump({"points": summaries, "fits": fits}, fh, indent=2)
    plot_scaling(os.path.join(workdir, "scaling.png"), by)
    print(text, flush=True)
    return {"message": (f"scaling over {len(points)} points: rotation ∝ "
                        f"N^{_fmt(fits['rotation_vs_nodes'], '.2f')} at "
                        f"fixed T, ∝ T^{_fmt(fits['rotation_vs_timesteps'], '.2f')} at fixed N; "
                        f"{os.path.join(workdir, 'table.md')}"), "fits": fits}


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


# == experiment: hub vulnerability =================================================================================

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
            coupling = D.graph_coupling(lcc, pad_nodes=base.n, width=width, pad_hubs=n_hubs, pad_hub_width=hub_width)
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
                     r.get("rotation_std", float("nan")), *_ms(c), dc, *_ms(rr), dr, r.get("overflow", float("nan"))])
        trows.append([f"{r['nodes']} {r['strategy']}", f"{100 * r['fraction']:.0f}%", r["removed"],
                      f"{100 * r['lcc_fraction']:.1f}%", f"{100 * r.get('detection', float('nan')):.0f}%",
                      _pm(r.get("rotation_mean"), r.get("rotation_std"), ".0f"),
                      _pm(float(np.nanmean(c)), rows[-1][10], ".4f"), f"{dc:+.4f}",
                      _pm(float(np.nanmean(rr)), rows[-1][13], ".3f"), f"{dr:+.3f}"])
    _write_csv(os.path.join(workdir, "hubs.csv"), header, rows)
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


# == experiment: Kuramoto coupling sweep ===========================================================================

def kuramoto_graph(kind: str, f):
    """(coupling, eigen dict for C(t), lattice side or 0, node count) for one graph kind of the sweep."""
    k = f.kuramoto
    if kind == "mean_field":
        return D.MeanFieldCoupling(int(k.nodes)), {}, 0, int(k.nodes)
    graph = G.build_graph(kind, int(k.nodes), periodic=f.periodic, ws_k=f.ws_k, ws_p=f.ws_p, ba_m=f.ba_m,
                          modules=f.n_modules, p_in=f.p_in, p_out=f.p_out, seed=f.graph_seed)
    lam, psi = G.laplacian_eigenmodes(graph, min(int(k.modes), graph.n), f.eigen)
    eigen = {"eigenvalues": jnp.asarray(lam, jnp.float32), "eigenvectors": jnp.asarray(psi, jnp.float32)}
    side = graph.side if (graph.is_lattice and graph.periodic) else 0
    return D.graph_coupling(graph), eigen, side, graph.n


def run_coupling(config, workdir: str) -> dict:
    f, k = config.field, config.field.kuramoto
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
        summary[kind] = {"n": n, "side": side, "res": res, "detected": detected}
        for i, kv in enumerate(ks):
            sp = np.where(detected[i], res["wave_speed"][i], np.nan)
            rows.append([kind, n, float(kv), int(k.trials), *_ms(res["R_mean"][i]),
                         float(n * np.mean(res["R_std"][i] ** 2)), *_ms(res["C_mean"][i]), *_ms(res["xi_mean"][i]),
                         float(np.mean(significant[i])) if side else float("nan"),
                         float(np.mean(detected[i])) if side else float("nan"), *_ms(res["wave_score"][i]),
                         float(np.nanmedian(sp)) if np.isfinite(sp).any() else float("nan")])
    header = ["graph", "nodes", "K", "trials", "R_mean", "R_sd_trials", "chi_N_varR", "C_mean", "C_sd_trials",
              "xi_mean", "xi_sd_trials", "wave_significant_fraction", "wave_detected_fraction", "wave_score_mean",
              "wave_score_sd", "wave_speed_median"]
    _write_csv(os.path.join(workdir, "coupling.csv"), header, rows)

    def pct(x):
        return f"{100 * x:.0f}%" if math.isfinite(x) else "n/a"

    trows = [[r[0], f"{r[2]:.2f}", _pm(r[4], r[5], ".3f"), _fmt(r[6], ".2f"), _pm(r[7], r[8], ".4f"),
              _pm(r[9], r[10], ".2f"), _pm(r[13], r[14], ".3f"), pct(r[11]), pct(r[12]), _fmt(r[15], ".3f")]
             for r in rows]
    peaks = []
    for kind, sm in summary.items():
        res = sm["res"]
        r_mean = res["R_mean"].mean(axis=1)
        chi = sm["n"] * (res["R_std"] ** 2).mean(axis=1)
        c_mean = np.nanmean(res["C_mean"], axis=1) if np.isfinite(res["C_mean"]).any() else None
        xi = np.nanmean(res["xi_mean"], axis=1) if np.isfinite(res["xi_mean"]).any() else None
        k_half = _crossing(ks, r_mean, 0.5)
        peaks.append([kind, _fmt(k_half, ".2f"), f"{ks[np.argmax(chi)]:.2f}",
                      f"{ks[np.nanargmax(c_mean)]:.2f}" if c_mean is not None else "n/a",
                      f"{ks[np.nanargmax(xi)]:.2f} (ξ={np.nanmax(xi):.1f})" if xi is not None else "n/a"])
    note = (f"Kuramoto: {k.integrator}, dt={k.dt}, {k.steps} steps, ω ~ {k.omega_dist}(mean {k.omega_mean}, width "
            f"{k.omega_width}), noise σ={k.noise_std}, θ_0 uniform; R, C(t) and ξ averaged over the second half of "
            f"the records (every {k.record_every} steps), mean ± sd over {k.trials} trials (same θ_0, ω at every "
            f"K). "
            f"χ = N·var_t(R). Plane waves (periodic lattices): ρ² = the phase variance the best plane wave "
            f"(k ≠ 0) explains in the final phases, tested against {k.surrogates} shuffled surrogates (p < "
            f"{k.alpha}: 'beats shuffle'); a wave is detected when it also explains ρ² ≥ {k.wave_min_score}; "
            f"speed = |mean dθ/dt| / |k| (median over detected trials).")
    if "mean_field" in k.graphs and k.omega_dist == "normal":
        note += f" Mean-field theory (N → ∞): K_c = 2 / (π g(0)) = {k.omega_width * math.sqrt(8 / math.pi):.3f}."
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


def _ms(x):
    x = np.asarray(x, np.float64)
    x = x[np.isfinite(x)]
    return (float(x.mean()) if len(x) else float("nan"), float(x.std(ddof=1)) if len(x) > 1 else float("nan"))


def _crossing(xs, ys, level: float) -> float:
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
        axes[0].errorbar(ks, res["R_mean"].mean(1), yerr=res["R_mean"].std(1), marker="o", ms=3, capsize=2, label=kind)
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


# == entry point ===================================================================================================

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
