"""The claims of the claims ledger (experiments/claims/ledger.py): one Claim per headline claim of the originals,
each with the results files it reads and the rule that turns their numbers into the row's text and verdict.

A rule reads only its results files' data and returns (original protocol rerun here, fair protocol, verdict, why).
Thresholds are stated where they are used: a difference "holds" when it is more than two standard errors from 0.
"""

from __future__ import annotations

from experiments.claims.rows_field import FIELD_CLAIMS
from experiments.claims.rows_memory import MEMORY_CLAIMS, MEMORY_COMMANDS
from experiments.claims.rows_models import HARMONIC_CLAIMS, PHASE_CLAIMS, WAVE_CLAIMS

FAMILIES = {
    "field": "Oscillator field (harmonic-field experiments)",
    "harmonic": "Harmonic GPT",
    "phase": "PhaseGPT",
    "memory": "Holographic memory",
    "wave": "Wave-Native GPT",
}

# The command that writes each results file (shown when one is missing); the page shows the command each file records.
COMMANDS = {
    "field": "for n in small medium large xlarge small+random_ic scaling hubs coupling; do python -m wavejax.main "
             "--config=configs/field.py:$n --workdir=runs/claims/field-${n/+/-}; done; python -m "
             "experiments.claims.field_report --runs runs/claims --results docs/results/field.json",
    "bench_harmonic": "python -m experiments.benchmarks.bench_harmonic --results docs/results/bench_harmonic.json",
    "harmonic_quality": "python -m experiments.reproductions.harmonic_quality --grid claims --size cpu --seeds 3 "
                        "--out runs/claims/harmonic_quality --results docs/results/harmonic_quality.json",
    "phase_compare": "python -m experiments.reproductions.compare --configs phase:tiny+nophase,phase:tiny+faithful,"
                     "phase:tiny --seeds 3 --steps 600 --set train.eval_batches=50 --set train.eval_every=100 "
                     "--out runs/claims/compare_phase --results docs/results/phase_compare.json",
    "phase_leak": "python -m experiments.claims.future_leak --batches 8 --modes prefix --workdirs <the six "
                  "phase-tiny+faithful_s* and phase-tiny_s* runs of runs/claims/compare_phase/runs> "
                  "--results docs/results/phase_leak.json",
    "phase_sweep": "python -m experiments.reproductions.compare --configs phase:tiny+faithful,phase:tiny+faithful+osc16,"
                   "phase:tiny+faithful+osc32,phase:tiny+faithful+osc64,phase:tiny+faithful+k2 --seeds 3 --steps 600 "
                   "--set train.eval_batches=50 --set train.eval_every=100 --out runs/claims/phase_sweep "
                   "--results docs/results/phase_sweep.json",
    "phase_dynamics": "python -m experiments.claims.phase_dynamics --out runs/claims/phase_dynamics/coherence_vs_k.png "
                      "--results docs/results/phase_dynamics.json",
    "wave_benchmark": "python -m experiments.reproductions.wave_benchmark --preset tiny --classic_steps 300 --set "
                      "train.sample_tokens=0 --out runs/claims/wave_benchmark_tiny --results docs/results/wave_benchmark.json",
    "wave_diagnostics_null": "python -m experiments.claims.wave_diagnostics_null --results "
                             "docs/results/wave_diagnostics_null.json",
    "P5": "python -m wavejax.main --config=configs/phase.py:wt2_kpc_mid (needs the hf extra, the network and a GPU)",
    **MEMORY_COMMANDS,
}



CLAIMS = [*FIELD_CLAIMS, *HARMONIC_CLAIMS, *PHASE_CLAIMS, *MEMORY_CLAIMS, *WAVE_CLAIMS]
