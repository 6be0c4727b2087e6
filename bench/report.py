"""Shared result format of the benchmark scripts: a printed table and a JSON file `make bench` collects."""

from __future__ import annotations

import json
import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path


@dataclass
class Metric:
    """One figure. `target` with `op` ('>=' or '<=') decides pass/fail; `limit` is the practical limit
    measured in the same run (for throughput), and `ratio` = value / limit."""

    metric: str
    value: float
    unit: str
    target: float | None = None
    op: str = ">="
    limit: float | None = None
    samples: list[float] = field(default_factory=list)
    note: str = ""

    @property
    def passed(self) -> bool | None:
        if self.target is None:
            return None
        return self.value >= self.target if self.op == ">=" else self.value <= self.target

    @property
    def ratio(self) -> float | None:
        return self.value / self.limit if self.limit else None

    def as_dict(self) -> dict:
        data = asdict(self)
        data.update(passed=self.passed, ratio=self.ratio,
                    min=min(self.samples) if self.samples else None,
                    max=max(self.samples) if self.samples else None,
                    runs=len(self.samples) or 1)
        return data


def median_metric(metric: str, samples: list[float], unit: str, **kwargs) -> Metric:
    """A metric whose value is the median of repeated runs; min and max are printed beside it."""
    return Metric(metric, statistics.median(samples), unit, samples=list(samples), **kwargs)


def format_table(metrics: list[Metric]) -> str:
    rows = [("metric", "value", "noise (min-max)", "target", "ratio to limit", "result")]
    for m in metrics:
        noise = f"{min(m.samples):,.4g}-{max(m.samples):,.4g}" if len(m.samples) > 1 else ""
        target = f"{m.op} {m.target:,.4g} {m.unit}" if m.target is not None else ""
        ratio = f"{m.ratio:.2f} of {m.limit:,.4g}" if m.ratio is not None else ""
        result = {True: "PASS", False: "FAIL", None: "info"}[m.passed]
        rows.append((m.metric, f"{m.value:,.4g} {m.unit}", noise, target, ratio, result))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def emit(benchmark: str, metrics: list[Metric], json_path: str | Path | None, **context) -> None:
    """Print the table and, when asked, write {"benchmark", "metrics", "context"} as JSON."""
    print(f"\n== {benchmark} ==")
    print(format_table(metrics))
    if json_path:
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(json_path).write_text(json.dumps(
            {"benchmark": benchmark, "metrics": [m.as_dict() for m in metrics], "context": context}, indent=2))
