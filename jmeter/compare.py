"""Two runs of `make load` (or `make load-saturate`) side by side: a Markdown table per plan.

Reads the ``summary.json`` that ``jmeter/report.py`` writes for each run and prints, for every
plan and every request label of either run, the throughput, the error count and the p50 and
p99 latency before and after, with the after/before ratio of the throughput and of the p99.

    .venv/bin/python jmeter/compare.py BEFORE/summary.json AFTER/summary.json
    git show HEAD~5:docs/load/summary.json > /tmp/before.json
    .venv/bin/python jmeter/compare.py /tmp/before.json docs/load/summary.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def _ratio(after: float | None, before: float | None) -> str:
    if not after or not before:
        return "-"
    return f"{after / before:.2f}x"


def _cell(row: dict[str, Any] | None, key: str, fmt: str) -> str:
    if row is None or row.get(key) is None:
        return "-"
    return format(row[key], fmt)


def compare(before: dict[str, Any], after: dict[str, Any]) -> str:
    lines = [
        f"before: {before.get('start', '?')} ({before.get('title', '')}); "
        f"after: {after.get('start', '?')} ({after.get('title', '')})",
        "",
    ]
    plans = list(dict.fromkeys([*before.get("plans", {}), *after.get("plans", {})]))
    for plan in plans:
        old = before.get("plans", {}).get(plan, {})
        new = after.get("plans", {}).get(plan, {})
        lines += [
            f"### {plan}",
            "",
            "| request | req/s before | after | ratio | errors before | after "
            "| p50 ms before | after | p99 ms before | after | p99 ratio |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        labels = list(dict.fromkeys([*old.get("labels", {}), *new.get("labels", {})]))
        rows = [
            (label, old.get("labels", {}).get(label), new.get("labels", {}).get(label)) for label in labels
        ]
        rows.append(("**all requests**", old.get("total"), new.get("total")))
        for label, was, now in rows:
            lines.append(
                f"| {label} | {_cell(was, 'rps', '.1f')} | {_cell(now, 'rps', '.1f')} "
                f"| {_ratio(now and now.get('rps'), was and was.get('rps'))} "
                f"| {_cell(was, 'errors', 'd')} | {_cell(now, 'errors', 'd')} "
                f"| {_cell(was, 'p50', '')} | {_cell(now, 'p50', '')} "
                f"| {_cell(was, 'p99', '')} | {_cell(now, 'p99', '')} "
                f"| {_ratio(now and now.get('p99'), was and was.get('p99'))} |"
            )
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    before, after = (json.loads(Path(path).read_text()) for path in argv[1:])
    print(compare(before, after))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
