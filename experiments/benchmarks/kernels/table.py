"""The one kernel table of bench_kernels: its columns, cell formats, and the split of kernel-vs-reference pairs."""

from __future__ import annotations

from experiments import common as C

COLUMNS = [  # (row key, header); a row without a key (or with None) prints "—"
    ("kernel", "kernel"), ("size", "size"), ("impl", "impl"), ("fwd_ms", "fwd ms"), ("fwd_bwd_ms", "fwd+bwd ms"),
    ("temp_bytes", "temp (fwd+bwd)"), ("throughput", "throughput"), ("peak_pct", "% of peak"),
    ("speedup", "speed-up vs ref"), ("max_err", "max err"), ("work", "scores / causal"),
]


def fmt_cell(key: str, value) -> str:
    if value is None:
        return "—"
    if key in ("fwd_ms", "fwd_bwd_ms"):
        return f"{value:.3f}" if value < 10 else f"{value:.1f}"
    if key == "temp_bytes":
        return C.fmt_bytes(value)
    if key == "peak_pct" and not isinstance(value, str):
        return f"{value:.1f}%"
    if key == "speedup":
        return f"{value:.2f}×"
    if key == "max_err":
        return f"{value:.1e}"
    if key == "work":
        return f"{value:.3f}"
    return str(value)


def render(rows: list[dict], extra_columns=(), cell=fmt_cell) -> str:
    """The markdown table of the COLUMNS some row has a value for, then `extra_columns` ((key, header) pairs)."""
    columns = [(k, hd) for k, hd in COLUMNS if any(r.get(k) is not None for r in rows)] + list(extra_columns)
    return C.markdown_table([hd for _, hd in columns], [[cell(k, r.get(k)) for k, _ in columns] for r in rows],
                            align="".join("l" if k in ("kernel", "size", "impl") else "r" for k, _ in columns))


def table_rows(row: dict) -> list[dict]:
    """A provider's row in this table's keys: as is when it names its impl, else a kernel-vs-reference pair split into
    an "xla" row and a "pallas" row."""
    if "impl" in row or "kernel_ms" not in row:
        return [row]
    size = row.get("shape", row.get("size"))
    xla_rate = row.get("xla_osc_steps_per_s")
    reference = {"kernel": row["kernel"], "size": size, "impl": "xla", "fwd_ms": row.get("ref_ms"),
                 "temp_bytes": row.get("ref_temp"), "speedup": 1.0,
                 "throughput": None if xla_rate is None else f"{xla_rate:.3g} osc-steps/s"}
    kernel = {"kernel": row["kernel"], "size": size, "impl": "pallas", "fwd_ms": row.get("kernel_ms"),
              "temp_bytes": row.get("kernel_temp"), "throughput": row.get("throughput"),
              "peak_pct": row.get("of_peak"), "speedup": row.get("speedup"), "max_err": row.get("max_abs_diff")}
    return [reference, kernel]
