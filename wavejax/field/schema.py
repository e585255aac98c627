"""config.field of the field experiments (task "field"): the defaults, the experiments and graphs they run, and the
checks `wavejax.config.validate` makes before any work (wavejax/field/task.py runs them)."""

from __future__ import annotations

import math

import ml_collections

from wavejax.errors import ConfigError
from wavejax.field import eigenmodes as EM
from wavejax.field import graphs as G
from wavejax.field.report import ORIGINAL_REPORTED
from wavejax.nn.registry import check_impl
from wavejax.ops import oscillators as D

EXPERIMENTS = ("modes", "scaling", "hubs", "coupling")


KURAMOTO_GRAPHS = (*G.KINDS, "mean_field")


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
    f.eigen = "auto"  # auto | lattice (closed form) | dense (float64 eigh) | sparse (eigsh): EM.laplacian_eigenmodes
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
    f.kuramoto.omega_separation = 0.0  # bimodal distributions: distance between the two peaks
    f.kuramoto.phase_lag = 0.0  # α (rad): dθ_i/dt = ω_i + K n_i Σ_j A_ij sin(θ_j - θ_i - α) (Sakaguchi–Kuramoto)
    f.kuramoto.inertia = 0.0  # m > 0: second order, m θ'' + damping θ' = ω + coupling (power-grid style)
    f.kuramoto.damping = 1.0
    f.kuramoto.dtype = "float32"  # float64: JAX's x64 mode for the whole run (phases of chaotic runs; see RESULTS.md)
    f.kuramoto.noise_std = 0.0
    f.kuramoto.surrogates = 99
    f.kuramoto.alpha = 0.05
    f.kuramoto.wave_min_score = 0.5  # a plane wave must also explain this fraction of the phase variance (ρ²)
    f.kuramoto.modes = 100  # eigenmodes for C(t) of the phase field
    f.kuramoto.batch = 32  # (K, trial) runs per jitted call
    f.kuramoto.impl = "xla"  # xla | pallas (lattices: fused steps, pallas_kernels/kuramoto_lattice.py)
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
    _req(f.eigen in EM.EIGEN_METHODS, f"field.eigen must be one of {EM.EIGEN_METHODS}, got {f.eigen!r}.")
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
    _req(math.isfinite(k.phase_lag), f"field.kuramoto.phase_lag must be a finite angle (rad), got {k.phase_lag}.")
    _req(math.isfinite(k.inertia) and k.inertia >= 0,
         f"field.kuramoto.inertia must be >= 0 (0: first order), got {k.inertia}.")
    _req(k.inertia == 0 or (math.isfinite(k.damping) and k.damping >= 0),
         f"field.kuramoto.damping must be >= 0, got {k.damping}.")
    _req(math.isfinite(k.omega_separation) and k.omega_separation >= 0,
         f"field.kuramoto.omega_separation must be >= 0, got {k.omega_separation}.")
    _req(k.dtype in ("float32", "float64"), f"field.kuramoto.dtype must be float32 or float64, got {k.dtype!r}.")
    check_impl("field.kuramoto", k.impl)
    _req(k.impl == "xla" or (k.phase_lag == 0 and k.inertia == 0 and k.dtype == "float32"),
         "field.kuramoto.impl='pallas' integrates the first-order model without phase lag in float32; set "
         "field.kuramoto.impl='xla' for phase_lag, inertia or float64.")
    _req(k.impl == "xla" or (need_graphs and tuple(k.graphs) == ("lattice",)),
         "field.kuramoto.impl='pallas' runs lattices only; set field.kuramoto.graphs=('lattice',) in the coupling "
         "experiment or use impl='xla'.")
    _req(0 < k.wave_min_score <= 1, f"field.kuramoto.wave_min_score must be in (0, 1], got {k.wave_min_score}.")
    _req(1 / (1 + k.surrogates) < k.alpha,
         f"field.kuramoto.surrogates={k.surrogates} cannot reach p < alpha={k.alpha}; use at least "
         f"{math.ceil(1 / k.alpha)} surrogates.")
