"""Oscillator field experiments (task "field"; spec: docs/specs/harmonic_field.md; code: wavejax/field/).

Default: the original GPU experiment's small sizes (31 x 31 periodic lattice, 200 modes, 1000 timesteps, 100 trials)
with the sound settings: initial-condition types drawn at random per trial. Arguments, combinable with "+"
(e.g. `small+random_ic`, `scaling+tiny`; the order does not matter: sizes and the original's configs are
applied first, and two other presets that disagree on a setting are refused):

  small, medium, large, xlarge   the original configs, faithful (type = trial % 4, random C(t) phases); small,
                                 medium and large print the original's reported row next to ours
  random_ic      the same trials with the initial-condition type drawn at random (the control of "the 25% rule")
  scaling        nodes and timesteps varied separately (rotation, CV, wave speed against each)
  hubs           Barabási–Albert graph (1000 nodes), 0-25% of nodes removed at random / by highest / lowest degree
  hubs_full      the same at the spec's sizes, 1k, 5k and 10k nodes (sparse eigensolver beyond 5000 nodes)
  coupling       Kuramoto coupling sweep K = 0.1 .. 2.0 on a 32 x 32 lattice, a small world, a scale-free graph and
                 all-to-all, 1024 oscillators each (CPU size)
  coupling_full  the spec's sweep: 100 x 100 lattice, 100 K values, 50 trials (a GPU job)
  pallas         the coupling sweep on the lattice only, integrated by the fused Pallas kernel
                 (pallas_kernels/kuramoto_lattice.py; same results as the default XLA path, interpret mode on a CPU;
                 docs/RESULTS.md has its measurements): `tiny+pallas`, `coupling_full+pallas`
  tiny           every experiment shrunk to seconds on a CPU (tests, CI)
"""

from wavejax.config import apply_preset, task_config
from wavejax.field.schema import default_field_config

_ORIGINAL = {"field.seed_faithful": True}

PRESETS = {
    "small": {**_ORIGINAL, "field.nodes": 1000, "field.modes": 200, "field.timesteps": 1000, "field.trials": 100,
              "field.reported": "small"},
    "medium": {**_ORIGINAL, "field.nodes": 2500, "field.modes": 500, "field.timesteps": 2000, "field.trials": 500,
               "field.reported": "medium"},
    "large": {**_ORIGINAL, "field.nodes": 5000, "field.modes": 800, "field.timesteps": 5000, "field.trials": 200,
              "field.reported": "large", "field.trial_batch": 25},
    "xlarge": {**_ORIGINAL, "field.nodes": 10000, "field.modes": 1000, "field.timesteps": 10000, "field.trials": 100,
               "field.trial_batch": 10},
    "random_ic": {"field.seed_faithful": False},
    "scaling": {**_ORIGINAL, "field.experiment": "scaling"},
    "hubs": {**_ORIGINAL, "field.experiment": "hubs"},
    "hubs_full": {**_ORIGINAL, "field.experiment": "hubs", "field.hubs.nodes": (1000, 5000, 10000)},
    "coupling": {"field.experiment": "coupling"},
    "coupling_full": {"field.experiment": "coupling", "field.kuramoto.graphs": ("lattice",),
                      "field.kuramoto.nodes": 10000, "field.kuramoto.k_count": 100, "field.kuramoto.trials": 50,
                      "field.kuramoto.batch": 500, "field.kuramoto.modes": 200},
    "pallas": {"field.experiment": "coupling", "field.kuramoto.graphs": ("lattice",), "field.kuramoto.impl": "pallas"},
    "tiny": {
        "field.nodes": 49, "field.modes": 12, "field.timesteps": 120, "field.trials": 8, "field.trial_batch": 4,
        "field.block": 16, "field.progress": False, "field.reported": "",
        "field.scaling.nodes": (25, 49), "field.scaling.timesteps": (80, 120), "field.scaling.base_nodes": 49,
        "field.scaling.base_timesteps": 120, "field.scaling.trials": 4,
        "field.hubs.nodes": (60,), "field.hubs.fractions": (0.0, 0.2), "field.hubs.trials": 4,
        "field.hubs.modes": 10, "field.hubs.timesteps": 120,
        "field.kuramoto.nodes": 64, "field.kuramoto.k_count": 3, "field.kuramoto.trials": 2,
        "field.kuramoto.steps": 200, "field.kuramoto.record_every": 50, "field.kuramoto.surrogates": 39,
        "field.kuramoto.modes": 8, "field.kuramoto.batch": 6, "field.kuramoto.graphs": ("lattice", "mean_field"),
    },
}


def get_config(arg=None):
    c = task_config("field")
    c.field = default_field_config()
    return apply_preset(c, arg, PRESETS)
