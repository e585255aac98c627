"""The scripts behind every number in docs/RESULTS.md, grouped by kind. Run them as modules from the repository root:

    python -m experiments.benchmarks.bench_train --configs baseline:tiny --steps 3 --warmup 1

Each script's docstring gives its commands and what its table means; `--help` prints it. Helpers shared by the
scripts (config specs, --set overrides, token budgets, timing, tables) live in experiments/common.py.

benchmarks/: speed and memory of wavejax itself, against a reference implementation measured in the same run
  bench_train            training-step time of configs: ms/step, tokens/s, model TFLOP/s, MFU, ratio to the first
  bench_harmonic         Harmonic GPT step time at the report's setting; wave-selective vs dense attention alone
  bench_field            field simulator trials/s and Kuramoto oscillator-steps/s against numpy loops
  bench_memory           holographic store writes/s, full-vocabulary reads/s and cache inserts/s against numpy
  bench_kernels          every Pallas kernel against its XLA reference: time, temp memory, throughput, exact work
                         (the per-kernel rows and tables are the plain modules in benchmarks/kernels/)
  phase_memory           compiled memory of one phase layer's forward + backward, mean-field vs naive pairwise
  wave_memory            compiled memory of one wave attention layer, blockwise vs the original's [B,H,T,T,W] form
  wave_optim_cost        time of one optimizer update of the wave optimizers against AdamW

claims/: what a figure or diagnostic of an original system measures, probed directly
  memory_claims          what the holographic memory's "100%" and related figures measure (spec sections 5-7)
  future_leak            how much of a model's validation loss comes from seeing tokens it will not have
  wave_diagnostics_null  how often the wave model's diagnostics fire on structureless inputs
  phase_dynamics         Kuramoto coherence against coupling K, and the interpretability R of unsynchronised phases
  field_report           the oscillator-field tables (original configs, controls) from the field run directories

reproductions/: runs that train or evaluate systems to reproduce a published result or compare at equal budget
  compare                   equal-token comparison of configs over seeds: table of mean ± std, loss curves
  nanogpt_cpu               nanoGPT's CPU shakespeare-char figure (val loss 1.88) with the baseline trunk
  nanogpt_torch_reference   nanoGPT itself (PyTorch) at the same settings and evaluation (needs torch)
  harmonic_quality          Harmonic GPT quality at equal tokens over the wave-fraction × window grid, leak probe
  wave_benchmark            the Wave-Native GPT's published comparison next to a fair one
  memory_eval               the holographic memory's evaluation on tinyshakespeare against n-grams and a GPT
  memory_capacity           recall of the slot memory against the number of pairs sharing a slot
"""
