"""End-of-run reports of a model family: numbers (and plots in the run directory) computed from the trained model.

A family registers `reporter(ctx) -> {name: float}` under its `config.model.family`; the training loop calls it
after the last evaluation (process 0 only) and writes the numbers to metrics.jsonl under the split "report".
The context gives the model, parameters, config, data (`.train`, `.val` token arrays, `.tokenizer`), the run
directory (plots go there), the step and an RNG key.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

REPORTERS: dict[str, Callable] = {}


class ReportContext(NamedTuple):
    model: Any
    params: Any
    config: Any
    data: Any
    workdir: str
    step: int
    rng: Any


def register_reporter(family: str):
    def deco(fn):
        if family in REPORTERS:
            raise ValueError(f"a reporter for {family!r} is registered twice")
        REPORTERS[family] = fn
        return fn

    return deco
