"""What a picture upload costs a gevent worker's other requests: the longest stall of its event
loop while uploads are decoded and re-encoded, with the work on the event loop itself (the
baseline) against the work in the pool of threads the app makes pictures in (``_off_the_event_loop`` in
ecommerce/products/images.py). One process under ``gevent.monkey``, the two ways alternated
round by round; the table gives medians of the rounds.

A ticker greenlet wakes every 5 ms and records how late it woke: that lateness is what every
other request held by the worker would wait. Meanwhile one greenlet makes pictures from a
photo-sized JPEG (4000 x 3000, noise, ~12 MP) with the same limits as the app's defaults.

    .venv/bin/python benchmarks/picture_uploads.py
    BENCH_ROUNDS=9 BENCH_PICTURES=6 .venv/bin/python benchmarks/picture_uploads.py
"""

from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import io  # noqa: E402
import os  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import gevent  # noqa: E402
from flask import Flask  # noqa: E402
from PIL import Image  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ecommerce.core.media import make_picture  # noqa: E402
from ecommerce.products.images import _off_the_event_loop  # noqa: E402

ROUNDS = int(os.environ.get("BENCH_ROUNDS", 5))
PICTURES = int(os.environ.get("BENCH_PICTURES", 4))
TICK = 0.005
LIMITS = {"max_pixels": 40_000_000, "max_edge": 2048, "thumbnail_edge": 400}
BENCH_APP = Flask(__name__)
BENCH_APP.config["MEDIA_PICTURE_THREADS"] = 2  # the app's default


def photo() -> bytes:
    buffer = io.BytesIO()
    Image.effect_noise((4000, 3000), 60).convert("RGB").save(buffer, "JPEG", quality=92)
    return buffer.getvalue()


def one_round(data: bytes, offload: bool) -> tuple[float, float]:
    """(the longest stall of the event loop in ms, seconds per picture)."""
    stalls: list[float] = []
    done = gevent.event.Event()

    def ticker() -> None:
        while not done.is_set():
            started = time.perf_counter()
            gevent.sleep(TICK)
            stalls.append(time.perf_counter() - started - TICK)

    def uploads() -> None:
        with BENCH_APP.app_context():  # a request's greenlet has one; this greenlet too
            for _ in range(PICTURES):
                if offload:
                    _off_the_event_loop(make_picture, data, **LIMITS)
                else:
                    make_picture(data, **LIMITS)
        done.set()

    started = time.perf_counter()
    gevent.joinall([gevent.spawn(ticker), gevent.spawn(uploads)])
    return max(stalls) * 1000, (time.perf_counter() - started) / PICTURES


def main() -> None:
    data = photo()
    print(f"photo: 4000 x 3000 JPEG, {len(data) / 1e6:.1f} MB; {PICTURES} pictures a round, {ROUNDS} rounds")
    results: dict[bool, list[tuple[float, float]]] = {False: [], True: []}
    one_round(data, True)  # warm-up: the pool's threads, Pillow's plugins
    for _ in range(ROUNDS):
        for offload in (False, True):
            results[offload].append(one_round(data, offload))
    print(f"{'where the picture is made':<28}{'longest stall, ms':>20}{'s per picture':>16}")
    for offload, label in ((False, "on the event loop"), (True, "in the picture threads (2)")):
        stall = statistics.median(r[0] for r in results[offload])
        each = statistics.median(r[1] for r in results[offload])
        print(f"{label:<28}{stall:>20.1f}{each:>16.3f}")
    base = statistics.median(r[0] for r in results[False])
    pool = statistics.median(r[0] for r in results[True])
    print(f"stall ratio, pool / event loop: {pool / base:.3f}")


if __name__ == "__main__":
    main()
