"""What the claims ledger's rules share: the verdict words and the statistics they are computed with.

A difference counts when it is more than two standard errors from 0 (`significant`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

from experiments import common as C

HOLDS, FAILS, UNTESTED = "holds", "does not hold", "not yet tested at the claimed scale"


@dataclass(frozen=True)
class Claim:
    """One row of the ledger: the claim as stated, where the original states it, the results files (names under
    docs/results/ without .json) and the rule: data by name -> (original protocol rerun, fair protocol, verdict, why)."""
    id: str
    family: str
    claim: str
    source: str
    needs: tuple[str, ...]
    assess: Callable[[dict], tuple[str, str, str, str]]
    headline: bool = False


def mean_sd(xs) -> tuple[float, float]:
    """Mean and sample std (0 for one value), by experiments.common.mean_std."""
    m, s, _ = C.mean_std(xs)
    return m, s or 0.0


def pm(xs, spec: str = ".4f") -> str:
    return C.fmt_mean_std(xs, "{:" + spec + "}")


def delta(a, b) -> tuple[float, float]:
    """mean(a) − mean(b) and its standard error."""
    (ma, sa), (mb, sb) = mean_sd(a), mean_sd(b)
    return ma - mb, math.sqrt(sa**2 / len(a) + sb**2 / len(b))


def fmt_delta(a, b) -> str:
    d, se = delta(a, b)
    return f"{d:+.4f} ± {se:.4f}"


def significant(a, b) -> int:
    """+1 / −1 when mean(a) − mean(b) is more than two standard errors above / below 0, else 0."""
    d, se = delta(a, b)
    return 0 if abs(d) <= 2 * se else (1 if d > 0 else -1)


def configs(compare_data: dict) -> dict[str, dict]:
    return {c["label"]: c for c in compare_data["configs"]}


def pct(x: float, spec: str = ".0f") -> str:
    return f"{100 * x:{spec}}%"


