"""The load-test report (jmeter/report.py) on small JTL files whose figures are known exactly."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "jmeter" / "report.py"

# jmeter/ is a folder of plans and scripts, not a package: load the script as a module.
_spec = importlib.util.spec_from_file_location("jmeter_report", SCRIPT)
report = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = report
_spec.loader.exec_module(report)

T0 = 1_700_000_000_000  # 2023-11-14 22:13:20 UTC
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
HEADER_213 = (
    "timeStamp,elapsed,label,responseCode,responseMessage,threadName,dataType,success,bytes,"
    "grpThreads,allThreads,Latency"
)
HEADER_5X = (
    "timeStamp,elapsed,label,responseCode,responseMessage,threadName,dataType,success,failureMessage,"
    "bytes,sentBytes,grpThreads,allThreads,URL,Latency,IdleTime,Connect"
)
REFUSED_CODE = "Non HTTP response code: java.net.ConnectException"


def catalog_213() -> str:
    """JMeter 2.13 columns, 10 s long.

    GET /api/products/: 100 samples, one every 100 ms, elapsed 1..100 ms (the last one ends at
    exactly 10 s). POST /api/orders/: 20 samples, one every 500 ms from 50 ms, 200 ms each; the
    second (in a 2 s warm-up) is a 500, the eleventh a refused connection.
    """
    lines = [HEADER_213]
    for i in range(1, 101):
        lines.append(
            f"{T0 + (i - 1) * 100},{i},GET /api/products/,200,OK,Shoppers 1-1,text,true,2014,4,4,{i}"
        )
    for k in range(20):
        if k == 1:
            code, message, success = "500", "Internal Server Error", "false"
        elif k == 10:
            code, message, success = REFUSED_CODE, "Non HTTP response message: Connection refused", "false"
        else:
            code, message, success = "201", "CREATED", "true"
        lines.append(
            f"{T0 + k * 500 + 50},200,POST /api/orders/,{code},{message},Buyers 2-1,text,{success},99,4,4,190"
        )
    return "\n".join(lines) + "\n"


def checkout_5x() -> str:
    """JMeter 5.x columns (extra ones included), quoted fields holding commas and quotes."""
    rows = [
        HEADER_5X,
        f'{T0},120,"GET /api/products/?page=1,2",200,OK,Journey 1-1,text,true,,512,120,1,1,'
        "http://127.0.0.1:8080/api/products/,110,0,3",
        f"{T0 + 500},80,POST /api/orders/,200,OK,Journey 1-2,text,false,"
        '"Test failed: text expected to contain /""status"": ""pending""/, got ""paid"", 1 line",'
        "700,300,2,2,http://127.0.0.1:8080/api/orders/,75,0,2",
        f"{T0 + 1000},1000,POST /api/orders/,{REFUSED_CODE},"
        '"Non HTTP response message: Connection refused, twice",Journey 1-1,text,false,,'
        "0,0,2,2,http://127.0.0.1:8080/api/orders/,0,0,1000",
        f"{T0 + 1500},500,GET /healthz,200,OK,Journey 1-2,text,true,,20,10,2,2,http://127.0.0.1:8080/healthz,"
        "490,0,1",
    ]
    return "\r\n".join(rows) + "\r\n"  # JMeter on Windows ends lines with CRLF


def ramp_213() -> str:
    """allThreads 1, 2, then 4 for 10 s each; L threads make L samples per second of 1000/L ms."""
    lines = [HEADER_213]
    start = T0
    for threads in (1, 2, 4):
        step = 1000 // threads
        for k in range(10 * threads):
            lines.append(
                f"{start + k * step},{step},GET /api/products/,200,OK,Ramp 1-{k % threads + 1},text,true,"
                f"10,{threads},{threads},{step}"
            )
        start += 10_000
    return "\n".join(lines) + "\n"


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode())
    return path


@pytest.fixture
def catalog(tmp_path: Path) -> Path:
    return write(tmp_path, "catalog.jtl", catalog_213())


def test_nearest_rank_percentiles():
    values = list(range(1, 101))
    assert [report.percentile(values, p) for p in (50, 90, 95, 99, 100)] == [50, 90, 95, 99, 100]
    assert report.percentile([7], 99) == 7
    assert report.percentile(list(range(1, 11)), 95) == 10  # rank ceil(9.5) = 10
    assert report.percentile(list(range(1, 1001)), 99.9) == 999
    assert report.percentile([3, 5], 0) == 3


def test_a_213_file_is_read_by_header_name(catalog: Path):
    plan = report.load_jtl(catalog)
    assert plan.name == "catalog" and plan.skipped_rows == 0
    assert len(plan.samples) == 120
    first = plan.samples[0]
    assert (first.timestamp, first.elapsed, first.label, first.code, first.success) == (
        T0,
        1,
        "GET /api/products/",
        "200",
        True,
    )
    assert (first.all_threads, first.latency, first.connect, first.bytes) == (4, 1, None, 2014)
    refused = [s for s in plan.samples if s.code == REFUSED_CODE]
    assert len(refused) == 1 and not refused[0].success
    assert (
        refused[0].message == "Non HTTP response message: Connection refused"
    )  # responseMessage: 2.13 has no failureMessage


def test_the_tables_of_a_known_distribution(catalog: Path):
    summary = report.summarise(report.load_jtl(catalog).samples)
    assert summary.duration_s == summary.measured_s == 10.0
    products = summary.labels["GET /api/products/"]
    assert (products.samples, products.errors, products.rps, products.error_rate) == (100, 0, 10.0, 0.0)
    assert products.mean == 50.5
    assert (products.min, products.p50, products.p90, products.p95, products.p99, products.max) == (
        1,
        50,
        90,
        95,
        99,
        100,
    )
    orders = summary.labels["POST /api/orders/"]
    assert (orders.samples, orders.errors, orders.rps, orders.error_rate) == (20, 2, 2.0, 0.1)
    assert (orders.p50, orders.p99, orders.max) == (200, 200, 200)
    total = summary.total
    assert (total.samples, total.errors, total.rps) == (120, 2, 12.0)
    assert total.error_rate == pytest.approx(2 / 120)
    assert total.mean == pytest.approx((5050 + 20 * 200) / 120)
    # 1..100 then twenty 200s: rank 60 is 60, ranks 101..120 are 200.
    assert (total.p50, total.p90, total.p95, total.p99) == (60, 200, 200, 200)
    assert list(summary.labels) == ["GET /api/products/", "POST /api/orders/"]  # the plan's order
    assert [(e.code, e.count) for e in summary.errors] == [("500", 1), (REFUSED_CODE, 1)]
    assert summary.warmup_samples == summary.warmup_errors == 0


def test_the_warmup_is_left_out_of_the_tables(catalog: Path):
    summary = report.summarise(report.load_jtl(catalog).samples, warmup_s=2)
    assert summary.measured_s == 8.0
    assert (summary.warmup_samples, summary.warmup_errors) == (20 + 4, 1)
    products = summary.labels["GET /api/products/"]  # elapsed 21..100 left
    assert (products.samples, products.rps, products.min) == (80, 10.0, 21)
    assert (products.p50, products.p90, products.p95, products.p99) == (60, 92, 96, 100)
    orders = summary.labels["POST /api/orders/"]  # k = 4..19; the 500 was in the warm-up
    assert (orders.samples, orders.errors, orders.rps, orders.error_rate) == (16, 1, 2.0, 1 / 16)
    assert [(e.code, e.message, e.count) for e in summary.errors] == [
        (REFUSED_CODE, "Non HTTP response message: Connection refused", 1)
    ]
    assert summary.total.rps == 12.0
    everything = report.summarise(report.load_jtl(catalog).samples, warmup_s=10)
    assert (everything.labels, everything.total, everything.warmup_samples) == ({}, None, 120)


def test_a_5x_file_with_extra_columns_and_quoted_commas(tmp_path: Path):
    plan = report.load_jtl(write(tmp_path, "checkout.jtl", checkout_5x()))
    assert [s.label for s in plan.samples] == [
        "GET /api/products/?page=1,2",
        "POST /api/orders/",
        "POST /api/orders/",
        "GET /healthz",
    ]
    assert plan.samples[0].connect == 3 and plan.samples[0].latency == 110
    assertion, refused = plan.samples[1], plan.samples[2]
    assert (assertion.code, assertion.success) == ("200", False)
    assert (
        assertion.message == 'Test failed: text expected to contain /"status": "pending"/, got "paid", 1 line'
    )
    assert (refused.code, refused.message) == (
        REFUSED_CODE,
        "Non HTTP response message: Connection refused, twice",
    )
    summary = report.summarise(plan.samples)
    assert summary.measured_s == 2.0  # the refused connection ends last, at 2 s
    assert summary.labels["POST /api/orders/"].error_rate == 1.0
    assert summary.total.rps == 2.0 and summary.total.errors == 2


def test_concurrency_from_allthreads_gives_the_rate_at_each_level(tmp_path: Path):
    plan = report.load_jtl(write(tmp_path, "ramp.jtl", ramp_213()))
    concurrency = report.by_concurrency(plan.samples)
    assert concurrency.source == "allThreads"
    assert [(lv.threads, lv.seconds, lv.samples, lv.rps, lv.p95, lv.p99) for lv in concurrency.levels] == [
        ("1", 10.0, 10, 1.0, 1000, 1000),
        ("2", 10.0, 20, 2.0, 500, 500),
        ("4", 10.0, 40, 4.0, 250, 250),
    ]


def test_without_allthreads_active_threads_are_counted_from_thread_names():
    def sample(at: int, elapsed: int, thread: str):
        return report.Sample(at, elapsed, "GET /", "200", True, thread_name=thread)

    # A is active from 0 to 1100 ms, B from 500 to 600 ms.
    samples = [sample(0, 100, "A"), sample(500, 100, "B"), sample(1000, 100, "A")]
    assert report.thread_levels(samples) == ("threadName", [1, 2, 1])
    assert report.thread_levels([report.Sample(0, 1, "GET /", "200", True)]) is None


def test_the_report_tables_json_and_charts(tmp_path: Path, catalog: Path):
    checkout = write(tmp_path, "checkout.jtl", checkout_5x())
    out = tmp_path / "out"
    plans = report.load_results([catalog, checkout])
    path = report.write_report(plans, out, title="Nightly", warmup_s=2)
    assert path == out / "report.md"

    md = path.read_text()
    assert md.startswith("# Nightly\n")
    assert "- Run window: 2023-11-14 22:13:20 UTC, 10.0 s (124 samples in 2 file(s))" in md
    assert "nearest-rank" in md
    assert "| GET /api/products/ | 80 | 10.00 | 0.00 | 60.5 | 60 | 92 | 96 | 100 | 100 |" in md
    assert "| POST /api/orders/ | 16 | 2.00 | 6.25 | 200.0 | 200 | 200 | 200 | 200 | 200 |" in md
    assert "| **TOTAL** | 96 | 12.00 | 1.04 | 83.8 | 68 | 200 | 200 | 200 | 200 |" in md
    assert (
        f"| 1 | {REFUSED_CODE} | Non HTTP response message: Connection refused | POST /api/orders/ (1) |"
        in md
    )
    assert "1 failed sample(s) during the warm-up" in md
    for name in ("catalog-latency.png", "catalog-throughput.png", "catalog-concurrency.png"):
        assert f"]({name})" in md
        data = (out / name).read_bytes()
        assert data.startswith(PNG_SIGNATURE) and len(data) > 10_000

    # The 5.x plan lasts 2 s: its 2 s warm-up leaves no table, but its charts are drawn.
    assert "**No sample starts after the 2 s warm-up**: no table" in md
    assert (out / "checkout-latency.png").read_bytes().startswith(PNG_SIGNATURE)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["percentiles"] == "nearest-rank" and summary["warmup_seconds"] == 2
    catalog_json = summary["plans"]["catalog"]
    assert catalog_json["labels"]["GET /api/products/"] == {
        "samples": 80,
        "errors": 0,
        "rps": 10.0,
        "error_rate": 0.0,
        "mean": 60.5,
        "min": 21,
        "p50": 60,
        "p90": 92,
        "p95": 96,
        "p99": 100,
        "max": 100,
    }
    assert catalog_json["total"]["samples"] == 96 and catalog_json["total"]["error_rate"] == round(1 / 96, 6)
    assert catalog_json["measured_s"] == 8.0 and catalog_json["warmup_samples"] == 24
    assert catalog_json["charts"]["latency"] == "catalog-latency.png"
    checkout_json = summary["plans"]["checkout"]
    assert checkout_json["labels"] == {}
    assert checkout_json["total"] is None


def test_the_command_line(tmp_path: Path, catalog: Path):
    checkout = write(tmp_path, "checkout.jtl", checkout_5x())
    out = tmp_path / "report"
    done = subprocess.run(
        [sys.executable, str(SCRIPT), str(catalog), str(checkout), "--out", str(out), "--title", "CLI"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"report: {out / 'report.md'}"
    md = (out / "report.md").read_text()
    assert "## checkout" in md
    assert "| GET /api/products/?page=1,2 | 1 | 0.50 | 0.00 | 120.0 | 120 | 120 | 120 | 120 | 120 |" in md
    assert (
        '| 1 | 200 | Test failed: text expected to contain /"status": "pending"/, got "paid", 1 line '
        "| POST /api/orders/ (1) |" in md
    )
    for name in ("checkout-latency.png", "checkout-throughput.png", "checkout-concurrency.png"):
        assert (out / name).read_bytes().startswith(PNG_SIGNATURE)
    assert json.loads((out / "summary.json").read_text())["plans"]["checkout"]["total"]["rps"] == 2.0


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "empty file"),
        ("\n\n", "empty file"),
        (HEADER_213 + "\n", r"no samples \(header only\)"),
        ("\x00\x13garbage;;\nmore garbage\n", "not JMeter CSV results: no column timeStamp"),
        ("<?xml version='1.0'?>\n<testResults version='1.2'>\n", "output_format=csv"),
        (f"{T0},5,GET /,200,OK,T 1-1,text,true,1,1,1,1\n", "print_field_names=true"),
        (HEADER_213 + "\nnot,a,sample\n", "no samples \\(1 unreadable rows, the first at line 2: 3 fields"),
    ],
)
def test_unusable_files_are_refused_with_the_reason(tmp_path: Path, capsys, text: str, message: str):
    path = write(tmp_path, "bad.jtl", text)
    with pytest.raises(report.ReportError, match=message):
        report.load_jtl(path)
    assert report.main([str(path), "--out", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err.startswith(f"report: {path}: ")
    assert not (tmp_path / "out").exists()


def test_a_truncated_last_line_is_skipped_and_reported(tmp_path: Path, catalog: Path):
    text = catalog.read_text() + f"{T0 + 9999},12,GET /api/prod"
    plan = report.load_jtl(write(tmp_path, "killed.jtl", text))
    assert len(plan.samples) == 120 and plan.skipped_rows == 1
    assert plan.first_skipped.startswith("line 122: 3 fields where the header has 12")
    md = report.write_report([plan], tmp_path / "out").read_text()
    assert "**1 unreadable row(s) skipped**, the first at line 122" in md
