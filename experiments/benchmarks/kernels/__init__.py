"""The kernel rows of experiments.benchmarks.bench_kernels, one plain module per kernel (none has a command line).

Each module gives `add_arguments(parser)` (its own options, prefixed with its name, e.g. --phase_shapes), `rows(args)`
(dicts in the keys of table.COLUMNS, or kernel-vs-reference pairs that table.table_rows splits into an "xla" and a
"pallas" row), `table(rows)` (its own table, printed by bench_kernels --per_kernel) and `verdict(rows)` (its GPU target
line); interference also gives `work_table(args)` (its exact sin/cos count, for --work_only --per_kernel).
"""
