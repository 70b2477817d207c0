"""jmeter/compare.py: two load reports' summaries side by side."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("jmeter_compare", ROOT / "jmeter" / "compare.py")
compare = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = compare
_spec.loader.exec_module(compare)


def _row(rps: float, errors: int, p50: int, p99: int) -> dict:
    return {"rps": rps, "errors": errors, "p50": p50, "p99": p99}


def test_each_request_of_either_run_gets_a_row_with_its_ratios() -> None:
    before = {
        "start": "A",
        "plans": {
            "journey": {
                "labels": {"POST /api/orders/": _row(10.0, 2, 30, 200)},
                "total": _row(10.0, 2, 30, 200),
            }
        },
    }
    after = {
        "start": "B",
        "plans": {
            "journey": {
                "labels": {"POST /api/orders/": _row(25.0, 0, 20, 50), "GET /api/cart/": _row(5.0, 0, 3, 9)},
                "total": _row(30.0, 0, 15, 48),
            },
            "catalog": {"labels": {}, "total": _row(100.0, 0, 3, 12)},
        },
    }
    table = compare.compare(before, after)
    assert "| POST /api/orders/ | 10.0 | 25.0 | 2.50x | 2 | 0 | 30 | 20 | 200 | 50 | 0.25x |" in table
    assert "| GET /api/cart/ | - | 5.0 | - | - | 0 | - | 3 | - | 9 | - |" in table
    assert "| **all requests** | 10.0 | 30.0 | 3.00x | 2 | 0 | 30 | 15 | 200 | 48 | 0.24x |" in table
    assert table.index("### journey") < table.index("### catalog")
