"""The load-test report: JMeter CSV results (JTL files) in, report.md, PNG charts and summary.json out.

    .venv/bin/python jmeter/report.py RESULTS.jtl [RESULTS2.jtl ...] --out DIR [--title T]
        [--warmup SECONDS] [--bucket SECONDS]

Each file is one plan (named after the file). JMeter must write CSV with a header line
(-Jjmeter.save.saveservice.output_format=csv -Jjmeter.save.saveservice.print_field_names=true);
columns are found by header name, so 2.13's and 5.x's column sets both work. Required:
timeStamp, elapsed, label, responseCode, success. Used when present: allThreads, threadName,
failureMessage, responseMessage, Latency, Connect, bytes. timeStamp is the sample's start: the
jmeter.properties of both versions sets sampleresult.timestamp.start=true.

- Tables: per plan, one row per label and a TOTAL row, over the measured window: from the end of
  the warm-up (the first --warmup seconds after the plan's first sample) to the end of its last
  sample. A label's req/s is its samples over that same window, so the rows add up to TOTAL.
- Percentiles are nearest-rank over `elapsed`: the value at rank ceil(p * n / 100) of the sorted
  samples, always a latency that was observed.
- Charts keep every sample and shade the warm-up: latency (p50/p95/p99) and throughput (with the
  error rate and the active threads) per --bucket seconds, and throughput and p95/p99 against
  the number of active threads, where a ramp-up shows its knee.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import re
import statistics
import sys
from bisect import bisect_left, bisect_right
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from fractions import Fraction
from pathlib import Path

# The Agg canvas, attached explicitly: no pyplot, so no GUI backend and no global figure state.
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

REQUIRED_COLUMNS = ("timeStamp", "elapsed", "label", "responseCode", "success")
OPTIONAL_NUMBERS = {"allThreads": "all_threads", "Latency": "latency", "Connect": "connect", "bytes": "bytes"}
PERCENTILE_METHOD = "nearest-rank"
TOP_ERRORS = 10
TOP_LABELS = 6  # labels drawn one by one in the time charts; the rest are "other"
# Concurrency levels are grouped into at most this many bins, and a bin observed for less than
# MIN_LEVEL_SECONDS is left out: a thread count seen for a moment gives a meaningless req/s.
MAX_LEVEL_BINS = 20
MIN_LEVEL_SECONDS = 1.0


class ReportError(Exception):
    """A results file (or a request) that cannot be reported on, with the reason."""


@dataclass(slots=True)
class Sample:
    timestamp: int  # epoch ms, the sample's start
    elapsed: int  # ms
    label: str
    code: str
    success: bool
    all_threads: int | None = None
    latency: int | None = None
    connect: int | None = None
    bytes: int | None = None
    thread_name: str = ""
    message: str = ""  # failureMessage, else responseMessage

    @property
    def end(self) -> int:
        return self.timestamp + self.elapsed


@dataclass
class Plan:
    """The samples of one JTL file, sorted by start time."""

    name: str
    path: Path
    columns: tuple[str, ...]
    samples: list[Sample]
    skipped_rows: int = 0
    first_skipped: str = ""  # where and why the first unreadable row was skipped


@dataclass
class Stats:
    samples: int
    errors: int
    rps: float
    error_rate: float  # a fraction, 0..1
    mean: float
    min: int
    p50: int
    p90: int
    p95: int
    p99: int
    max: int


@dataclass
class ErrorGroup:
    code: str
    message: str
    count: int
    labels: dict[str, int]  # the labels it came from, most frequent first (at most 3)


@dataclass
class Summary:
    """The figures of one plan's tables: its window, per-label and total stats, its errors."""

    start_ms: int
    end_ms: int
    measured_start_ms: int
    warmup_samples: int
    labels: dict[str, Stats]
    total: Stats | None  # None when the warm-up covers every sample
    errors: list[ErrorGroup]
    other_errors: int  # failed samples of kinds beyond the top TOP_ERRORS
    warmup_errors: int

    @property
    def duration_s(self) -> float:
        return (self.end_ms - self.start_ms) / 1000

    @property
    def measured_s(self) -> float:
        return max(self.end_ms - self.measured_start_ms, 0) / 1000


@dataclass
class LevelStats:
    threads: str  # "10", or a range "11-15" when levels are binned
    threads_mean: float  # weighted by the time spent at each level
    seconds: float
    samples: int
    errors: int
    rps: float
    error_rate: float
    p95: int
    p99: int


@dataclass
class Concurrency:
    source: str  # "allThreads", or "threadName" when counted from each thread's first and last sample
    levels: list[LevelStats] = field(default_factory=list)


# -- reading ----------------------------------------------------------------------------------------


def load_results(paths: Sequence[str | Path]) -> list[Plan]:
    """Read JTL files, one plan each, named after the file (made unique by a suffix)."""
    if not paths:
        raise ReportError("no results files given")
    plans: list[Plan] = []
    names: set[str] = set()
    for path in paths:
        name = base = Path(path).stem
        suffix = 2
        while name in names:
            name, suffix = f"{base}-{suffix}", suffix + 1
        names.add(name)
        plans.append(load_jtl(path, name))
    return plans


def load_jtl(path: str | Path, name: str | None = None) -> Plan:
    """Read one JMeter CSV results file; ReportError when it is empty or not one."""
    path = Path(path)
    # A failureMessage can quote a whole response body: allow fields beyond csv's 128 KiB default.
    csv.field_size_limit(max(csv.field_size_limit(), 16 * 1024 * 1024))
    try:
        handle = path.open(encoding="utf-8-sig", errors="replace", newline="")
    except OSError as error:
        raise ReportError(f"{path}: cannot read it ({error.strerror})") from error
    with handle:
        first = handle.readline()
        if not first.strip():
            if not handle.read().strip():
                raise ReportError(f"{path}: empty file, JMeter wrote no samples (did the plan run?)")
            raise ReportError(f"{path}: line 1 is blank, expected JMeter's header line")
        if first.lstrip().startswith("<"):
            raise ReportError(
                f"{path}: XML results; run JMeter with -Jjmeter.save.saveservice.output_format=csv"
            )
        delimiter = _delimiter(first)
        header = [column.strip() for column in next(csv.reader([first], delimiter=delimiter))]
        missing = [column for column in REQUIRED_COLUMNS if column not in header]
        if missing:
            if header[0].isdigit():
                raise ReportError(
                    f"{path}: no header line (line 1 is a sample); run JMeter with "
                    "-Jjmeter.save.saveservice.print_field_names=true"
                )
            raise ReportError(
                f"{path}: not JMeter CSV results: no column {', '.join(missing)} in the header "
                f"(found: {', '.join(header[:12])[:200]})"
            )
        parse = _row_parser(header)
        samples: list[Sample] = []
        skipped, first_skipped = 0, ""
        reader = csv.reader(handle, delimiter=delimiter)
        try:
            for row in reader:
                if not row or (len(row) == 1 and not row[0].strip()):
                    continue
                try:
                    samples.append(parse(row))
                except ValueError as error:
                    # A run killed mid-write leaves a truncated last line: skip it, and say so.
                    skipped += 1
                    first_skipped = first_skipped or f"line {reader.line_num + 1}: {error}"
        except csv.Error as error:
            raise ReportError(f"{path}: line {reader.line_num + 1}: {error}") from error
    if not samples:
        detail = f"{skipped} unreadable rows, the first at {first_skipped}" if skipped else "header only"
        raise ReportError(f"{path}: no samples ({detail})")
    samples.sort(key=lambda sample: sample.timestamp)
    return Plan(name or path.stem, path, tuple(header), samples, skipped, first_skipped)


def _delimiter(header_line: str) -> str:
    # jmeter.save.saveservice.default_delimiter may have been changed from the comma.
    for delimiter in (",", "\t", ";", "|"):
        if "timeStamp" in (part.strip() for part in header_line.rstrip("\r\n").split(delimiter)):
            return delimiter
    return ","


def _row_parser(header: list[str]) -> Callable[[list[str]], Sample]:
    """A function turning one row of this header's files into a Sample; ValueError if it cannot."""
    width = len(header)
    index = {column: i for i, column in enumerate(header)}
    timestamp, elapsed, label, code, success = (index[column] for column in REQUIRED_COLUMNS)
    thread = index.get("threadName")
    optional = [
        (index[column], attribute) for column, attribute in OPTIONAL_NUMBERS.items() if column in index
    ]
    messages = [index[column] for column in ("failureMessage", "responseMessage") if column in index]
    interned: dict[str, str] = {}  # labels, codes and thread names repeat: keep one copy of each

    def number(value: str, column: int) -> int:
        try:
            return int(value)
        except ValueError:
            raise ValueError(f"{header[column]} {value[:40]!r} is not a whole number") from None

    def parse(row: list[str]) -> Sample:
        if len(row) != width:
            raise ValueError(f"{len(row)} fields where the header has {width}")
        outcome = row[success].strip().lower()
        if outcome not in ("true", "false"):
            raise ValueError(f"success {outcome[:40]!r} is neither true nor false")
        sample = Sample(
            timestamp=number(row[timestamp], timestamp),
            elapsed=number(row[elapsed], elapsed),
            label=interned.setdefault(row[label], row[label]),
            code=interned.setdefault(row[code], row[code].strip()),
            success=outcome == "true",
            thread_name=interned.setdefault(row[thread], row[thread]) if thread is not None else "",
        )
        for column, attribute in optional:
            if row[column].strip():
                setattr(sample, attribute, number(row[column], column))
        if not sample.success:
            sample.message = next((row[i].strip() for i in messages if row[i].strip()), "")
        return sample

    return parse


# -- figures ----------------------------------------------------------------------------------------


def percentile(sorted_values: Sequence[int], p: float) -> int:
    """Nearest-rank percentile of ascending values: the value at rank ceil(p * n / 100)."""
    if not sorted_values:
        raise ValueError("no values")
    rank = math.ceil(Fraction(str(p)) * len(sorted_values) / 100)
    return sorted_values[max(rank, 1) - 1]


def stats_of(samples: Sequence[Sample], window_ms: int) -> Stats:
    """The table figures of some samples, their req/s taken over window_ms."""
    elapsed = sorted(sample.elapsed for sample in samples)
    errors = sum(not sample.success for sample in samples)
    return Stats(
        samples=len(elapsed),
        errors=errors,
        rps=len(elapsed) / (max(window_ms, 1) / 1000),
        error_rate=errors / len(elapsed),
        mean=statistics.fmean(elapsed),
        min=elapsed[0],
        p50=percentile(elapsed, 50),
        p90=percentile(elapsed, 90),
        p95=percentile(elapsed, 95),
        p99=percentile(elapsed, 99),
        max=elapsed[-1],
    )


def summarise(samples: Sequence[Sample], warmup_s: float = 0.0) -> Summary:
    """One plan's tables: samples (sorted by start) less the first warmup_s seconds."""
    if not samples:
        raise ReportError("no samples")
    start_ms = samples[0].timestamp
    end_ms = max(sample.end for sample in samples)
    measured_start_ms = start_ms + round(warmup_s * 1000)
    measured = [sample for sample in samples if sample.timestamp >= measured_start_ms]
    window_ms = end_ms - measured_start_ms
    by_label: dict[str, list[Sample]] = defaultdict(list)
    for sample in measured:
        by_label[sample.label].append(sample)
    # Measured samples are in start order, so labels come in the order the plan first runs them.
    errors, other_errors = top_errors(measured)
    return Summary(
        start_ms=start_ms,
        end_ms=end_ms,
        measured_start_ms=measured_start_ms,
        warmup_samples=len(samples) - len(measured),
        labels={label: stats_of(group, window_ms) for label, group in by_label.items()},
        total=stats_of(measured, window_ms) if measured else None,
        errors=errors,
        other_errors=other_errors,
        warmup_errors=sum(not sample.success for sample in samples[: len(samples) - len(measured)]),
    )


def top_errors(samples: Sequence[Sample], limit: int = TOP_ERRORS) -> tuple[list[ErrorGroup], int]:
    """Failed samples grouped by response code and message, the most frequent first; and the rest."""
    kinds: Counter[tuple[str, str]] = Counter()
    labels: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
    for sample in samples:
        if not sample.success:
            key = (sample.code, sample.message)
            kinds[key] += 1
            labels[key][sample.label] += 1
    top = [
        ErrorGroup(code, message, count, dict(labels[(code, message)].most_common(3)))
        for (code, message), count in kinds.most_common(limit)
    ]
    return top, sum(kinds.values()) - sum(group.count for group in top)


def thread_levels(samples: Sequence[Sample]) -> tuple[str, list[int]] | None:
    """The active thread count when each sample started, and where it came from; None if unknown.

    JMeter's allThreads when it was saved; otherwise each threadName counts as active from the
    start of its first sample to the end of its last one.
    """
    if any(sample.all_threads for sample in samples):
        levels, level = [], 0
        for sample in samples:
            level = sample.all_threads if sample.all_threads is not None else level
            levels.append(level)
        return "allThreads", levels
    if not any(sample.thread_name for sample in samples):
        return None
    first: dict[str, int] = {}
    last: dict[str, int] = {}
    for sample in samples:
        if sample.thread_name:
            first.setdefault(sample.thread_name, sample.timestamp)
            last[sample.thread_name] = max(last.get(sample.thread_name, 0), sample.end)
    starts, ends = sorted(first.values()), sorted(last.values())
    # Active at t: started at or before t, and not ended before t.
    return "threadName", [
        bisect_right(starts, sample.timestamp) - bisect_left(ends, sample.timestamp) for sample in samples
    ]


def by_concurrency(samples: Sequence[Sample], end_ms: int | None = None) -> Concurrency | None:
    """Throughput, errors and p95/p99 per active-thread level (binned), over every sample given.

    The thread count is a step function that changes at each sample's start: the time from one
    sample's start to the next is spent at the first one's level, so req/s at a level is its
    samples over the time spent there.
    """
    found = thread_levels(samples)
    if found is None:
        return None
    source, levels = found
    end_ms = max(sample.end for sample in samples) if end_ms is None else end_ms
    lowest, highest = min(levels), max(levels)
    distinct = len(set(levels))
    width = 1 if distinct <= MAX_LEVEL_BINS else math.ceil((highest - lowest + 1) / MAX_LEVEL_BINS)
    time_ms: Counter[int] = Counter()
    level_time: Counter[int] = Counter()  # level x ms, for the time-weighted mean level of a bin
    elapsed: dict[int, list[int]] = defaultdict(list)
    errors: Counter[int] = Counter()
    seen: dict[int, set[int]] = defaultdict(set)
    for i, (sample, level) in enumerate(zip(samples, levels, strict=True)):
        until = samples[i + 1].timestamp if i + 1 < len(samples) else max(end_ms, sample.timestamp)
        key = (level - lowest) // width
        time_ms[key] += until - sample.timestamp
        level_time[key] += level * (until - sample.timestamp)
        elapsed[key].append(sample.elapsed)
        errors[key] += not sample.success
        seen[key].add(level)
    result = Concurrency(source)
    for key in sorted(elapsed):
        seconds = time_ms[key] / 1000
        if seconds < MIN_LEVEL_SECONDS:
            continue
        values = sorted(elapsed[key])
        low, high = min(seen[key]), max(seen[key])
        result.levels.append(
            LevelStats(
                threads=str(low) if low == high else f"{low}-{high}",
                threads_mean=level_time[key] / time_ms[key],
                seconds=seconds,
                samples=len(values),
                errors=errors[key],
                rps=len(values) / seconds,
                error_rate=errors[key] / len(values),
                p95=percentile(values, 95),
                p99=percentile(values, 99),
            )
        )
    return result


# -- charts -----------------------------------------------------------------------------------------


@dataclass
class Buckets:
    """Samples grouped by start time into fixed-width buckets from the plan's first sample."""

    width_s: float
    middles: list[float]  # seconds since the first sample, one per bucket
    spans: list[float]  # seconds each bucket covers (the last one may be short)
    samples: list[list[Sample]]
    levels: list[list[int]] | None  # the active threads of each bucket's samples


def bucketise(samples: Sequence[Sample], width_s: float, levels: Sequence[int] | None = None) -> Buckets:
    start_ms = samples[0].timestamp
    end_ms = max(sample.end for sample in samples)
    width_ms = width_s * 1000
    count = int((samples[-1].timestamp - start_ms) // width_ms) + 1
    grouped: list[list[Sample]] = [[] for _ in range(count)]
    grouped_levels: list[list[int]] = [[] for _ in range(count)]
    for i, sample in enumerate(samples):
        bucket = int((sample.timestamp - start_ms) // width_ms)
        grouped[bucket].append(sample)
        if levels is not None:
            grouped_levels[bucket].append(levels[i])
    return Buckets(
        width_s=width_s,
        middles=[(i + 0.5) * width_s for i in range(count)],
        spans=[max(min(width_ms, end_ms - start_ms - i * width_ms), 1) / 1000 for i in range(count)],
        samples=grouped,
        levels=grouped_levels if levels is not None else None,
    )


def busiest_labels(samples: Sequence[Sample], limit: int = TOP_LABELS) -> list[str]:
    return [label for label, _ in Counter(sample.label for sample in samples).most_common(limit)]


def _new_figure(rows: int, height: float, ratios: list[int] | None = None) -> tuple[Figure, list]:
    figure = Figure(figsize=(13, height), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(rows, 1, sharex=True, squeeze=False, height_ratios=ratios)[:, 0]
    return figure, list(axes)


def _mark_warmup(axis, warmup_s: float) -> None:
    if warmup_s > 0:
        axis.axvspan(0, warmup_s, color="0.88", zorder=0, label=f"warm-up ({warmup_s:g} s, not in tables)")


def _time_axis(axis, plan: Plan) -> None:
    axis.set_xlabel(f"seconds since the first sample ({_when(plan.samples[0].timestamp)})")
    axis.set_xlim(left=0)


def plot_latency(plan: Plan, path: Path, *, bucket_s: float, warmup_s: float) -> None:
    """p50, p95 and p99 of elapsed per bucket: one line per busiest label and one for all."""
    buckets = bucketise(plan.samples, bucket_s)
    labels = busiest_labels(plan.samples)
    # Sorted elapsed per bucket, for each drawn label and for all of them.
    by_label: dict[str, list[list[int]]] = {label: [[] for _ in buckets.samples] for label in labels}
    overall = [sorted(s.elapsed for s in bucket) for bucket in buckets.samples]
    for i, bucket in enumerate(buckets.samples):
        for s in bucket:
            if s.label in by_label:
                by_label[s.label][i].append(s.elapsed)
    for values in by_label.values():
        for bucket_values in values:
            bucket_values.sort()
    figure, axes = _new_figure(3, 10)
    for axis, p in zip(axes, (50, 95, 99), strict=True):
        _mark_warmup(axis, warmup_s)
        for label, values in by_label.items():
            line = [percentile(v, p) if v else math.nan for v in values]
            axis.plot(buckets.middles, line, marker=".", markersize=4, linewidth=1.2, label=label)
        line = [percentile(v, p) if v else math.nan for v in overall]
        axis.plot(buckets.middles, line, color="black", linewidth=2, label="all labels")
        axis.set_ylabel(f"p{p} latency (ms)")
        axis.set_ylim(bottom=0)
        axis.grid(alpha=0.3)
    _time_axis(axes[-1], plan)
    figure.suptitle(
        f"{plan.name}: latency over time (elapsed, {PERCENTILE_METHOD} p50 / p95 / p99 per {bucket_s:g} s)"
    )
    figure.legend(*axes[0].get_legend_handles_labels(), loc="outside right upper", fontsize="small")
    figure.savefig(path)


def plot_throughput(plan: Plan, path: Path, *, bucket_s: float, warmup_s: float) -> None:
    """Requests per second per bucket, stacked by label, with the active threads; error % below."""
    found = thread_levels(plan.samples)
    buckets = bucketise(plan.samples, bucket_s, found[1] if found else None)
    labels = busiest_labels(plan.samples)
    figure, (rps_axis, error_axis) = _new_figure(2, 8, [3, 1])
    _mark_warmup(rps_axis, warmup_s)
    counts = [Counter(s.label for s in bucket) for bucket in buckets.samples]
    series = [
        [count[label] / span for count, span in zip(counts, buckets.spans, strict=True)] for label in labels
    ]
    names = list(labels)
    others = [
        (count.total() - sum(count[label] for label in labels)) / span
        for count, span in zip(counts, buckets.spans, strict=True)
    ]
    if any(others):
        series.append(others)
        names.append("other labels")
    rps_axis.stackplot(buckets.middles, *series, labels=names, alpha=0.85)
    rps_axis.set_ylabel(f"throughput (req/s, per {bucket_s:g} s)")
    rps_axis.set_ylim(bottom=0)
    rps_axis.grid(alpha=0.3)
    handles, legend_labels = rps_axis.get_legend_handles_labels()
    if found and buckets.levels is not None:
        threads_axis = rps_axis.twinx()
        peak = [max(levels) if levels else math.nan for levels in buckets.levels]
        threads_axis.plot(
            buckets.middles, peak, color="black", linestyle="--", label=f"active threads ({found[0]})"
        )
        threads_axis.set_ylabel("active threads")
        threads_axis.set_ylim(bottom=0)
        extra_handles, extra_labels = threads_axis.get_legend_handles_labels()
        handles, legend_labels = handles + extra_handles, legend_labels + extra_labels
    _mark_warmup(error_axis, warmup_s)
    error_pct = [
        100 * sum(not s.success for s in bucket) / len(bucket) if bucket else math.nan
        for bucket in buckets.samples
    ]
    error_axis.plot(buckets.middles, error_pct, color="tab:red", marker=".", markersize=4)
    error_axis.fill_between(buckets.middles, error_pct, color="tab:red", alpha=0.2)
    error_axis.set_ylabel("errors (%)")
    error_axis.set_ylim(bottom=0, top=max([5.0] + [e * 1.1 for e in error_pct if not math.isnan(e)]))
    error_axis.grid(alpha=0.3)
    _time_axis(error_axis, plan)
    figure.suptitle(f"{plan.name}: throughput and error rate over time (per {bucket_s:g} s)")
    figure.legend(handles, legend_labels, loc="outside right upper", fontsize="small")
    figure.savefig(path)


def plot_concurrency(plan: Plan, path: Path, concurrency: Concurrency) -> None:
    """Throughput, then p95 and p99, against the number of active threads."""
    levels = concurrency.levels
    threads = [level.threads_mean for level in levels]
    figure, (rps_axis, latency_axis) = _new_figure(2, 8)
    rps_axis.plot(threads, [level.rps for level in levels], marker="o", color="tab:blue", label="throughput")
    peak = max(levels, key=lambda level: level.rps)
    rps_axis.axvline(peak.threads_mean, color="0.5", linestyle=":")
    rps_axis.annotate(
        f"peak: {peak.rps:.1f} req/s at {peak.threads} threads",
        (peak.threads_mean, peak.rps),
        textcoords="offset points",
        xytext=(8, 8),
        fontsize="small",
        bbox={"boxstyle": "round", "facecolor": "white", "edgecolor": "0.7"},
    )
    rps_axis.set_ylabel("throughput (req/s)")
    rps_axis.set_ylim(0, max(peak.rps * 1.25, 1))
    rps_axis.grid(alpha=0.3)
    latency_axis.plot(threads, [level.p95 for level in levels], marker="o", label="p95")
    latency_axis.plot(threads, [level.p99 for level in levels], marker="s", label="p99")
    latency_axis.axvline(peak.threads_mean, color="0.5", linestyle=":")
    latency_axis.set_ylabel("latency (ms)")
    latency_axis.set_ylim(bottom=0)
    latency_axis.grid(alpha=0.3)
    latency_axis.legend(loc="best")
    latency_axis.set_xlabel(f"active threads ({concurrency.source}; every sample, warm-up included)")
    latency_axis.set_xlim(left=0)
    figure.suptitle(f"{plan.name}: throughput and latency against concurrency")
    figure.savefig(path)


# -- the report -------------------------------------------------------------------------------------


def _shown(path: Path) -> str:
    """A results file as the report names it: relative to the working folder when inside it."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _when(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _cell(text: str, limit: int = 160) -> str:
    text = " ".join(text.split())
    text = text if len(text) <= limit else text[: limit - 1] + "…"
    return text.replace("|", "\\|") or " "


def _stats_row(name: str, stats: Stats) -> str:
    return (
        f"| {name} | {stats.samples} | {stats.rps:.2f} | {100 * stats.error_rate:.2f} | {stats.mean:.1f} "
        f"| {stats.p50} | {stats.p90} | {stats.p95} | {stats.p99} | {stats.max} |"
    )


def _stats_json(stats: Stats) -> dict:
    figures = asdict(stats)
    figures.update(rps=round(stats.rps, 3), error_rate=round(stats.error_rate, 6), mean=round(stats.mean, 3))
    return figures


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-") or "plan"


def write_report(
    plans: Sequence[Plan],
    out_dir: str | Path,
    *,
    title: str = "Load test report",
    warmup_s: float = 0.0,
    bucket_s: float = 5.0,
) -> Path:
    """Write report.md, summary.json and each plan's charts into out_dir; return report.md's path."""
    if warmup_s < 0 or bucket_s <= 0:
        raise ReportError("--warmup must be >= 0 and --bucket > 0")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    start_ms = min(plan.samples[0].timestamp for plan in plans)
    end_ms = max(max(sample.end for sample in plan.samples) for plan in plans)
    md = [
        f"# {title}",
        "",
        f"- Run window: {_when(start_ms)}, {(end_ms - start_ms) / 1000:.1f} s "
        f"({sum(len(plan.samples) for plan in plans)} samples in {len(plans)} file(s))",
        f"- Warm-up: the first {warmup_s:g} s of each plan are left out of the tables; the time charts "
        "keep them, shaded."
        if warmup_s
        else "- Warm-up: none (--warmup 0); every sample is in the tables.",
        f"- Latency is JMeter's `elapsed` in ms; percentiles are {PERCENTILE_METHOD} (the value at rank "
        "⌈p·n/100⌉ of the sorted samples).",
        "- Req/s is samples over the measured window (end of the warm-up to the end of the last sample); "
        "a label's req/s uses its plan's window, so the rows add up to TOTAL.",
        "",
    ]
    document = {
        "title": title,
        "percentiles": PERCENTILE_METHOD,
        "warmup_seconds": warmup_s,
        "bucket_seconds": bucket_s,
        "start": _iso(start_ms),
        "end": _iso(end_ms),
        "duration_s": (end_ms - start_ms) / 1000,
        "plans": {},
    }
    for plan in plans:
        summary = summarise(plan.samples, warmup_s)
        concurrency = by_concurrency(plan.samples, summary.end_ms)
        slug = _slug(plan.name)
        charts = {"latency": f"{slug}-latency.png", "throughput": f"{slug}-throughput.png"}
        plot_latency(plan, out / charts["latency"], bucket_s=bucket_s, warmup_s=warmup_s)
        plot_throughput(plan, out / charts["throughput"], bucket_s=bucket_s, warmup_s=warmup_s)
        if concurrency and concurrency.levels:
            charts["concurrency"] = f"{slug}-concurrency.png"
            plot_concurrency(plan, out / charts["concurrency"], concurrency)
        md += _plan_section(plan, summary, concurrency, charts, warmup_s)
        document["plans"][plan.name] = {
            "source": _shown(plan.path),
            "start": _iso(summary.start_ms),
            "end": _iso(summary.end_ms),
            "duration_s": summary.duration_s,
            "measured_start": _iso(summary.measured_start_ms),
            "measured_s": summary.measured_s,
            "warmup_samples": summary.warmup_samples,
            "warmup_errors": summary.warmup_errors,
            "skipped_rows": plan.skipped_rows,
            "labels": {label: _stats_json(stats) for label, stats in summary.labels.items()},
            "total": _stats_json(summary.total) if summary.total else None,
            "errors": [asdict(group) for group in summary.errors],
            "other_errors": summary.other_errors,
            "concurrency_source": concurrency.source if concurrency else None,
            "concurrency": [
                {**asdict(level), "rps": round(level.rps, 3), "threads_mean": round(level.threads_mean, 2)}
                for level in (concurrency.levels if concurrency else [])
            ],
            "charts": charts,
        }
    report = out / "report.md"
    report.write_text("\n".join(md).rstrip() + "\n", encoding="utf-8")
    (out / "summary.json").write_text(
        json.dumps(document, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    return report


def _plan_section(
    plan: Plan, summary: Summary, concurrency: Concurrency | None, charts: dict[str, str], warmup_s: float
) -> list[str]:
    md = [
        f"## {plan.name}",
        "",
        f"`{_shown(plan.path)}`: {_when(summary.start_ms)}, {summary.duration_s:.1f} s, "
        f"{len(plan.samples)} samples; "
        f"measured {summary.measured_s:.1f} s from {_when(summary.measured_start_ms)}"
        + (f" ({summary.warmup_samples} warm-up samples left out)" if warmup_s else "")
        + ".",
        "",
    ]
    if plan.skipped_rows:
        md += [f"**{plan.skipped_rows} unreadable row(s) skipped**, the first at {plan.first_skipped}.", ""]
    if summary.total:
        md += [
            "| Label | Samples | Req/s | Error % | Mean (ms) | p50 | p90 | p95 | p99 | Max |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
            *(_stats_row(_cell(label), stats) for label, stats in summary.labels.items()),
            _stats_row("**TOTAL**", summary.total),
            "",
        ]
    else:
        md += [f"**No sample starts after the {warmup_s:g} s warm-up**: no table (see the charts).", ""]
    md += ["### Errors", ""]
    if summary.errors:
        md += [
            "| Count | Response code | Message | Labels |",
            "|---:|---|---|---|",
            *(
                f"| {group.count} | {_cell(group.code, 80)} | {_cell(group.message)} | "
                + _cell(", ".join(f"{label} ({n})" for label, n in group.labels.items()), 200)
                + " |"
                for group in summary.errors
            ),
            "",
        ]
        if summary.other_errors:
            md += [f"{summary.other_errors} more failed sample(s) of other kinds.", ""]
    else:
        md += ["No failed samples in the measured window.", ""]
    if summary.warmup_errors:
        md += [f"{summary.warmup_errors} failed sample(s) during the warm-up (not counted above).", ""]
    md += ["### Against concurrency", ""]
    if concurrency and concurrency.levels:
        md += [
            f"Active threads from `{concurrency.source}`; every sample, warm-up included (a ramp-up is "
            f"where the knee shows). Levels seen for under {MIN_LEVEL_SECONDS:g} s are left out.",
            "",
            "| Threads | Seconds | Samples | Req/s | Error % | p95 | p99 |",
            "|---:|---:|---:|---:|---:|---:|---:|",
            *(
                f"| {level.threads} | {level.seconds:.1f} | {level.samples} | {level.rps:.2f} | "
                f"{100 * level.error_rate:.2f} | {level.p95} | {level.p99} |"
                for level in concurrency.levels
            ),
            "",
        ]
    elif concurrency:
        md += [f"No thread count was held for {MIN_LEVEL_SECONDS:g} s or more.", ""]
    else:
        md += ["Neither `allThreads` nor `threadName` is in the results: no concurrency figures.", ""]
    md += ["### Charts", ""]
    names = {
        "latency": "Latency over time",
        "throughput": "Throughput and errors over time",
        "concurrency": "Against concurrency",
    }
    for kind, file in charts.items():
        md += [f"![{plan.name}: {names[kind]}]({file})", ""]
    return md


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", nargs="+", type=Path, help="JMeter CSV results (.jtl), one per plan")
    parser.add_argument("--out", required=True, type=Path, help="folder for report.md, summary.json, PNGs")
    parser.add_argument("--title", default="Load test report")
    parser.add_argument("--warmup", type=float, default=0.0, metavar="SECONDS", help="left out of the tables")
    parser.add_argument("--bucket", type=float, default=5.0, metavar="SECONDS", help="time-chart resolution")
    args = parser.parse_args(argv)
    try:
        plans = load_results(args.results)
        for plan in plans:
            if plan.skipped_rows:
                print(
                    f"{plan.path}: skipped {plan.skipped_rows} unreadable row(s), the first at "
                    f"{plan.first_skipped}",
                    file=sys.stderr,
                )
            if plan.samples[-1].timestamp < plan.samples[0].timestamp + args.warmup * 1000:
                print(f"{plan.path}: no sample starts after the {args.warmup:g} s warm-up", file=sys.stderr)
        report = write_report(plans, args.out, title=args.title, warmup_s=args.warmup, bucket_s=args.bucket)
    except ReportError as error:
        print(f"report: {error}", file=sys.stderr)
        return 2
    print(f"report: {report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
