"""The field experiments' trials, jitted and batched: the original's mode-space model (per-trial keys, initial-condition
types, streamed statistics) and Kuramoto networks over a coupling sweep. Every trial has its own key,
fold_in(PRNGKey(seed), trial_seed + trial), so a trial's numbers do not depend on how trials are batched."""

from __future__ import annotations

import dataclasses
import functools
import math
import time

import jax
import jax.numpy as jnp
import numpy as np

from pallas_kernels import kuramoto_lattice as KL
from wavejax.field import eigenmodes as EM
from wavejax.field import graphs as G
from wavejax.field import metrics as M
from wavejax.ops import oscillators as D
from wavejax.parallel.sharding import BatchSplit
from wavejax.rundir import check_interrupted


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
    """The graph's `modes` lowest Laplacian eigenmodes in the pinned basis of `EM.laplacian_eigenmodes` (auto: the
    closed form for lattices), node coordinates (a lattice's own, else a spectral layout from those modes) and their
    mean pairwise distance."""
    start = time.perf_counter()
    lam, psi = EM.laplacian_eigenmodes(graph, modes, eigen)
    positions = EM.layout_positions(graph, None if graph.positions is not None else psi)
    return ModeSetup(graph, lam, psi, positions, G.mean_pairwise_distance(positions), time.perf_counter() - start)


# -- the mode model's noise, a block of steps at a time -------------------------------------------------------------

_THREEFRY_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))


def threefry2x32(k1, k2, x1, x2):
    """The Threefry-2x32 hash (20 rounds), bit for bit jax's threefry2x32 primitive, written out: XLA:CPU gets jax's
    as a rolled loop of 5 iterations (a while loop per call: its dispatches and carry copies cost more than the
    hashing), this as one elementwise fusion. All arguments uint32, broadcast together; returns (y1, y2)."""
    ks = (k1, k2, k1 ^ k2 ^ np.uint32(0x1BD11BDA))
    x1, x2 = x1 + ks[0], x2 + ks[1]
    for i in range(5):
        for r in _THREEFRY_ROTATIONS[i % 2]:
            x1 = x1 + x2
            x2 = ((x2 << np.uint32(r)) | (x2 >> np.uint32(32 - r))) ^ x1
        x1 = x1 + ks[(i + 1) % 3]
        x2 = x2 + ks[(i + 2) % 3] + np.uint32(i + 1)
    return x1, x2


def _block_erfinv(noise_key, ts, n_modes: int):
    """[len(ts), n_modes] float32: erfinv(u) of ξ_t = √2 erfinv(u) (see `block_noise`)."""
    key = jnp.asarray(noise_key, jnp.uint32)
    ts = jnp.asarray(ts).astype(jnp.uint32)
    k1, k2 = threefry2x32(key[0], key[1], jnp.zeros_like(ts), ts)  # fold_in(key, t) = hash(key, [0, t])
    half = -(-n_modes // 2)  # jax pads an odd count with one 0
    count = jnp.arange(2 * half, dtype=jnp.uint32).at[n_modes:].set(0)
    y1, y2 = threefry2x32(k1[:, None], k2[:, None], count[None, :half], count[None, half:])
    bits = jnp.concatenate([y1, y2], axis=1)[:, :n_modes]
    unit = jax.lax.bitcast_convert_type((bits >> 9) | jnp.uint32(0x3F800000), jnp.float32) - 1.0  # [0, 1)
    return jax.lax.erf_inv(jnp.maximum(np.nextafter(np.float32(-1), np.float32(0)), unit * 2 - 1))


def block_noise(noise_key, ts, n_modes: int, dtype=jnp.float32):
    """[len(ts), n_modes]: ξ_t for every step t in ts, bit for bit `oscillators.step_noise(noise_key, t, (n_modes,))`
    (the key fold_in(noise_key, t), the threefry hash of the counter 0..K-1 with both output words used, then
    √2 erfinv of a uniform on (-1, 1)), drawn for a whole block of steps at once: one hash for the step keys and one
    for the block instead of two small ones per step."""
    return (np.float32(math.sqrt(2)) * _block_erfinv(noise_key, ts, n_modes)).astype(dtype)


def mode_blocks(a0, acc, observe, decay, noise_key, cubic, noise_std, *, steps: int, block: int):
    """`oscillators.scan_blocks(oscillators.mode_stepper(decay, noise_key, cubic, noise_std), a0, acc, observe,
    steps=steps, block=block, keep_states=True)`, same states to the bit on a CPU, with each block's noise drawn
    before its steps (`block_noise`) instead of inside every step. Returns (state, acc, records).

    The step adds erfinv(u) · (√2 σ), not (√2 erfinv(u)) · σ: XLA folds the two scalar factors of the in-step draw
    that way, so this keeps the rounding (and the committed results) of the per-step draw."""
    if steps < 1 or block < 1:
        raise ValueError(f"need steps >= 1 and block >= 1, got steps={steps}, block={block}")
    n_blocks = -(-steps // block)
    ragged = steps % block != 0
    scale = np.float32(math.sqrt(2)) * noise_std

    def run_block(carry, t_first):
        a, ac, states = carry  # states: the previous block's, overwritten row by row (no fresh buffer per block)
        noise = _block_erfinv(noise_key, t_first + jnp.arange(block, dtype=jnp.int32), a.shape[-1]).astype(a.dtype)

        def inner(i, a_states):  # rows read and written in place: no transposed copies of the noise or the states
            a, states = a_states
            new = D.mode_step(a, jax.lax.dynamic_index_in_dim(noise, i, keepdims=False), decay, cubic, scale)
            if ragged:  # hold the state after the last real step
                new = jnp.where(t_first + i <= steps, new, a)
            return new, jax.lax.dynamic_update_index_in_dim(states, new, i, 0)

        a, states = jax.lax.fori_loop(0, block, inner, (a, states))
        ac, rec = observe(ac, states, t_first, jnp.minimum(block, steps - t_first + 1))
        return (a, ac, states), rec

    firsts = 1 + block * jnp.arange(n_blocks, dtype=jnp.int32)
    (a, acc, _), records = jax.lax.scan(run_block, (a0, acc, jnp.zeros((block,) + a0.shape, a0.dtype)), firsts)
    return a, acc, records


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
    _, (rot, lags, blowup, _), c_records = mode_blocks(a0, acc0, observe, D.mode_decay(lam, arrays["rate"]), noise_key,
                                                       arrays["cubic"], arrays["noise_std"], steps=timesteps - 1,
                                                       block=block)
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


def kuramoto_trial(key, coupling_k, coupling, extras: dict, *, n: int, dt: float, steps: int, record_every: int,
                   integrator: str, noise_std: float, omega_dist: str, omega_mean: float, omega_width: float,
                   surrogates: int, lattice_side: int, impl: str = "xla", omega_separation: float = 0.0,
                   phase_lag: float = 0.0, inertia: float = 0.0, damping: float = 1.0, dtype: str = "float32") -> dict:
    """One Kuramoto run from uniform random phases. Records every record_every steps: R, C(t) of the phase field's
    eigenmode projection and (lattices) the correlation length; reports their means over the second half of the
    records, R's std there, and (lattices) the plane-wave test of the final phases with its phase speed."""
    k_theta, k_omega, k_noise, k_surr = jax.random.split(key, 4)
    theta0 = jax.random.uniform(k_theta, (n,), jnp.dtype(dtype), -math.pi, math.pi)
    omega = D.natural_frequencies(k_omega, n, omega_dist, omega_mean, omega_width, jnp.dtype(dtype), omega_separation)
    dynamics = dict(phase_lag=phase_lag, inertia=inertia or None, damping=damping) if (phase_lag or inertia) else {}
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
    run = KL.fused_kuramoto_run if impl == "pallas" else D.kuramoto_run  # the kernel: lattices, several steps a launch
    state, _, rec = run(theta0, omega, coupling_k, coupling, dt=dt, steps=steps, record_every=record_every,
                        integrator=integrator, noise_std=noise_std, noise_key=k_noise, observe=observe, acc=acc0,
                        **dynamics)
    theta = state[0] if inertia else state
    half = rec["R"].shape[0] // 2
    out = {"R_mean": rec["R"][half:].mean(), "R_std": rec["R"][half:].std(), "R_final": rec["R"][-1],
           "R_trace": rec["R"]}
    nan = jnp.float32(jnp.nan)
    out["C_mean"] = rec["C"][half:].mean() if "C" in rec else nan
    out["xi_mean"] = rec["xi"][half:].mean() if "xi" in rec else nan
    if lattice_side:
        test = M.plane_wave_test(theta.reshape(lattice_side, lattice_side), k_surr, surrogates)
        rate = state[1] if inertia else D.kuramoto_rhs(theta, omega, coupling_k, coupling, phase_lag=phase_lag)
        out.update(wave_score=test["score"], wave_p=test["p_value"],
                   wave_speed=M.phase_wave_speed(rate, test["ky"], test["kx"]))
    else:
        out.update(wave_score=nan, wave_p=nan, wave_speed=nan)
    return out


@functools.partial(jax.jit, static_argnames=("n", "dt", "steps", "record_every", "integrator", "noise_std",
                                             "omega_dist", "omega_mean", "omega_width", "surrogates", "lattice_side",
                                             "impl", "omega_separation", "phase_lag", "inertia", "damping", "dtype"))
def kuramoto_trials(keys, couplings, coupling, extras, **static):
    """kuramoto_trial vmapped over a leading axis of (key [B, 2], coupling K [B]) pairs."""
    return jax.vmap(lambda k, c: kuramoto_trial(k, c, coupling, extras, **static))(keys, couplings)


def kuramoto_static(k, n: int, lattice_side: int) -> dict:
    return dict(n=int(n), dt=float(k.dt), steps=int(k.steps), record_every=int(min(k.record_every, k.steps)),
                integrator=str(k.integrator), noise_std=float(k.noise_std), omega_dist=str(k.omega_dist),
                omega_mean=float(k.omega_mean), omega_width=float(k.omega_width), surrogates=int(k.surrogates),
                lattice_side=int(lattice_side), impl=str(k.impl), omega_separation=float(k.omega_separation),
                phase_lag=float(k.phase_lag), inertia=float(k.inertia), damping=float(k.damping), dtype=str(k.dtype))


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
            ks = couplings[idx].astype(static.get("dtype", "float32"))
            out = jax.device_get(call(*split.put(keys[idx], ks), coupling, extras))
            parts.append({k: np.asarray(v)[: hi - lo] for k, v in out.items()})
            bar.update(hi - lo)
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def mode_graph(f, nodes: int | None = None) -> G.Graph:
    return G.build_graph(f.graph, int(nodes if nodes is not None else f.nodes), periodic=f.periodic, ws_k=f.ws_k,
                         ws_p=f.ws_p, ba_m=f.ba_m, modules=f.n_modules, p_in=f.p_in, p_out=f.p_out, seed=f.graph_seed)


def kuramoto_graph(kind: str, f):
    """(coupling, eigen dict for C(t), lattice side or 0, node count) for one graph kind of the sweep."""
    k = f.kuramoto
    if kind == "mean_field":
        return D.MeanFieldCoupling(int(k.nodes)), {}, 0, int(k.nodes)
    graph = G.build_graph(kind, int(k.nodes), periodic=f.periodic, ws_k=f.ws_k, ws_p=f.ws_p, ba_m=f.ba_m,
                          modules=f.n_modules, p_in=f.p_in, p_out=f.p_out, seed=f.graph_seed)
    lam, psi = EM.laplacian_eigenmodes(graph, min(int(k.modes), graph.n), f.eigen)
    eigen = {"eigenvalues": jnp.asarray(lam, jnp.float32), "eigenvectors": jnp.asarray(psi, jnp.float32)}
    side = graph.side if (graph.is_lattice and graph.periodic) else 0
    return G.graph_coupling(graph), eigen, side, graph.n
