"""The default rate limit (RATELIMIT_DEFAULT): per client address and route, counted in each
process and shared through Redis in batches.

Flask-Limiter keeps the limits that routes declare (login, registration: few requests, where a
count exact to the request matters). The default limit is on every request of every route, and
there Flask-Limiter cost the cached product detail 43-46% of its throughput whatever the strategy
(moving window 0.57x, sliding-window counter 0.58x, fixed window 0.54x of no limit;
benchmarks/rate_limits.py), and still 0.54x with its in-memory storage: about 120 us of Python
per request to resolve and evaluate the limits, plus three Redis round trips (the hit, and a GET
and a TTL for the headers). This module does the same job in a few dictionary operations:

- Fixed windows aligned to the clock (a minute limit's window is the minute), so every process
  agrees on where a window starts and ends, and its reset time needs no TTL from Redis.
- Each process counts the requests it accepts and, every RATELIMIT_SYNC_SECONDS (0.1 s) while
  it has counted something, adds it to Redis in one pipeline (INCRBY, EXPIRE per client and
  route) and learns from the answers what every process has counted. That runs beside the
  requests (a greenlet under gunicorn), so no request waits for Redis. RATELIMIT_SYNC_SECONDS=0
  shares every request as it comes instead: exact, at one round trip per request.
- A client is refused when the count it is known to have (Redis's at the last sync, plus what
  this process has accepted since) passes the limit. Between two syncs the other processes'
  requests are unseen, so a client spread over P processes can pass its limit by what it sends
  to P - 1 of them in 0.1 s: a few requests past a limit of hundreds a minute, never a multiple.
- Without Redis (the embedded defaults), or while it is down, each process counts alone: the
  limit holds per process, and nothing fails. Counts that could not be added are kept and added
  at the next sync that succeeds.

Every answer it counts carries X-RateLimit-Limit, X-RateLimit-Remaining and X-RateLimit-Reset
(as Flask-Limiter's do), and a refusal is a 429 problem with Retry-After.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from flask import Flask, Response, current_app, g, request
from limits import RateLimitItem, parse_many

from ecommerce.errors import problem

log = logging.getLogger(__name__)

# Never limited: a 429 would fail a health probe or leave a hole in the metrics.
EXEMPT_ENDPOINTS = frozenset({"health.LivenessView", "health.ReadinessView", "prometheus_metrics"})
# On a view function that declares a Flask-Limiter limit of its own (``route_limit``).
_ROUTE_LIMITED = "_ecommerce_route_limit"
_ROUTE_LIMITS_SEEN = "route_limits_seen"
_EXTENSION = "default_rate_limit"
_CLIENT = "default_rate_limit_client"
_RETRY_FAILED_SYNC_SECONDS = 1.0


@dataclass
class _Window:
    """One limit's current window in this process: per client and route, what Redis said at the
    last sync (``known``, every process's count) and what this process accepted since (``pending``)."""

    number: int
    known: dict[str, int] = field(default_factory=dict)
    pending: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Verdict:
    limit: RateLimitItem
    remaining: int
    reset: int  # the epoch second the window ends
    allowed: bool


class DefaultLimit:
    def __init__(
        self, limits: list[RateLimitItem], redis: Any | None, prefix: str, sync_seconds: float
    ) -> None:
        self.limits = limits
        self.redis = redis
        self.prefix = prefix
        self.sync_seconds = sync_seconds
        self._windows: list[_Window] = [_Window(-1) for _ in limits]
        self._retry_at = 0.0  # after a failed sync, not before
        self._flusher: threading.Thread | None = None
        self._syncing = threading.Lock()  # gevent's, under gunicorn: one sync at a time

    def _window(self, index: int, now: float) -> _Window:
        number = int(now // self.limits[index].get_expiry())
        window = self._windows[index]
        if window.number != number:
            # A new window: the last one's counts are of no more use (its keys expire in Redis).
            window = self._windows[index] = _Window(number)
        return window

    def hit(self, who: str, now: float | None = None) -> Verdict:
        """Count one request of ``who`` (client and route), unless a limit refuses it. The verdict
        names the limit that refused, or the one nearest to refusing."""
        now = time.time() if now is None else now
        windows = [self._window(index, now) for index in range(len(self.limits))]
        for window in windows:
            window.pending[who] = window.pending.get(who, 0) + 1
        if self.redis is not None:
            if self.sync_seconds <= 0:
                self.sync(now)  # every request: exact, at one round trip each
            elif self._flusher is None:
                self._start_flusher()
        verdict = refused = None
        for limit, window in zip(self.limits, windows, strict=True):
            used = window.known.get(who, 0) + window.pending.get(who, 0)
            reset = (window.number + 1) * limit.get_expiry()
            if used > limit.amount and refused is None:
                refused = Verdict(limit, 0, reset, allowed=False)
            remaining = max(0, limit.amount - used)
            if verdict is None or remaining < verdict.remaining:
                verdict = Verdict(limit, remaining, reset, allowed=True)
        if refused is not None:
            for window in windows:  # a refused request is not counted (unless already shared)
                if window.pending.get(who):
                    window.pending[who] -= 1
            return refused
        assert verdict is not None
        return verdict

    def _start_flusher(self) -> None:
        # A greenlet under gunicorn's gevent workers (threading is patched there), a thread
        # elsewhere; it ends once nothing is left to share, and the next request starts another.
        self._flusher = threading.Thread(
            target=self._share_while_pending, name="rate-limit-sync", daemon=True
        )
        self._flusher.start()

    def _share_while_pending(self) -> None:
        try:
            while True:
                time.sleep(self.sync_seconds)
                self.sync()
                if not any(window.pending for window in self._windows):
                    return
        finally:
            self._flusher = None

    def sync(self, now: float | None = None) -> None:
        """Add this process's counts to Redis and learn everyone's, in one round trip."""
        if not self._syncing.acquire(blocking=False):
            return  # another greenlet is syncing
        try:
            now = time.time() if now is None else now
            if now < self._retry_at:
                return
            batch = []
            for index, window in enumerate(self._windows):
                pending, window.pending = window.pending, {}
                period = self.limits[index].get_expiry()
                batch += [(index, window, period, who, count) for who, count in pending.items() if count]
            if not batch:
                return
            pipeline = self.redis.pipeline(transaction=False)
            for index, window, period, who, count in batch:
                key = f"{self.prefix}:{index}:{window.number}:{who}"
                pipeline.incrby(key, count)
                pipeline.expire(key, period + 1)
            try:
                answers = pipeline.execute()
            except Exception as error:  # noqa: BLE001 (any Redis failure: count alone for now)
                for _, window, _, who, count in batch:
                    window.pending[who] = window.pending.get(who, 0) + count
                self._retry_at = now + _RETRY_FAILED_SYNC_SECONDS
                log.warning("rate limit counts not shared, counting in this process: %s", error)
                return
            for (_, window, _, who, _), total in zip(batch, answers[::2], strict=True):
                window.known[who] = int(total)
        finally:
            self._syncing.release()


def route_limit(limiter: Any, *args: Any, **kwargs: Any) -> Callable[[Callable], Callable]:
    """Flask-Limiter's ``limit`` decorator for a view's own limit (login, registration), which
    also marks the view as limited, so that ``without_route_limit`` lets Flask-Limiter check
    its requests."""
    limit = limiter.limit(*args, **kwargs)

    def decorator(func: Callable) -> Callable:
        limited = limit(func)
        setattr(limited, _ROUTE_LIMITED, True)
        return limited

    return decorator


def without_route_limit() -> bool:
    """Flask-Limiter request filter: True for a request whose view declares no limit of its own.

    Flask-Limiter holds only the routes' own limits here (RATELIMIT_DEFAULT is counted by this
    module), yet it resolves limits for every request: about 30 us of Python per cached
    product read, measured in process with rate limiting on (benchmarks/read_path.py;
    docs/performance_tuning.md, "Reads at the floor"). A view without a ``route_limit`` has
    nothing for it to find, so its requests skip the look-up. The answer is kept per endpoint
    and method: views are registered before the first request.

    Nothing is skipped when limits that apply to every route are configured for Flask-Limiter
    itself (RATELIMIT_APPLICATION, RATELIMIT_META). A limit on a whole blueprint
    (``limiter.limit(...)(blueprint)``) is not seen here: limits go on views, by ``route_limit``."""
    endpoint = request.endpoint
    if endpoint is None or endpoint in EXEMPT_ENDPOINTS:
        return True
    seen: dict[tuple[str, str], bool] = current_app.extensions.setdefault(_ROUTE_LIMITS_SEEN, {})
    key = (endpoint, request.method)
    exempt = seen.get(key)
    if exempt is None:
        exempt = seen[key] = not _has_route_limit(endpoint, request.method)
    return exempt


def _has_route_limit(endpoint: str, method: str) -> bool:
    """Whether Flask-Limiter may hold a limit for ``method`` on ``endpoint``."""
    config = current_app.config
    if config.get("RATELIMIT_APPLICATION") or config.get("RATELIMIT_META"):
        return True
    view = current_app.view_functions.get(endpoint)
    if getattr(view, _ROUTE_LIMITED, False):  # on the view itself (a MethodView's ``decorators``)
        return True
    view_class = getattr(view, "view_class", None)
    if view_class is None:
        return False
    handler = getattr(view_class, method.lower(), None)
    if handler is None and method == "HEAD":  # Flask's MethodView answers HEAD with get
        handler = getattr(view_class, "get", None)
    return bool(getattr(handler, _ROUTE_LIMITED, False))


def init_limits(app: Flask, limiter: Any, redis: Any | None, client: Callable[[], str]) -> None:
    """Flask-Limiter for the routes' own limits, this module for RATELIMIT_DEFAULT (Flask-Limiter
    is initialised without it, and the setting is left as it was for whoever reads it), per
    ``client`` (the address) and route."""
    spec = app.config.get("RATELIMIT_DEFAULT")
    app.config["RATELIMIT_DEFAULT"] = None
    try:
        limiter.init_app(app)
    finally:
        app.config["RATELIMIT_DEFAULT"] = spec
    if not spec or not app.config.get("RATELIMIT_ENABLED", True):
        return
    app.extensions[_CLIENT] = client
    app.extensions[_EXTENSION] = DefaultLimit(
        parse_many(spec),
        redis,
        prefix=f"{app.config['RATELIMIT_KEY_PREFIX']}:default",
        sync_seconds=float(app.config["RATELIMIT_SYNC_SECONDS"]),
    )
    app.before_request(_check_default_limit)
    app.after_request(_add_limit_headers)


def _check_default_limit() -> Response | None:
    if request.endpoint in EXEMPT_ENDPOINTS or request.method == "OPTIONS":
        return None
    limit: DefaultLimit = current_app.extensions[_EXTENSION]
    client = current_app.extensions[_CLIENT]()
    verdict = g.default_limit = limit.hit(f"{client}/{request.endpoint or request.path}")
    if verdict.allowed:
        return None
    retry_after = max(1, verdict.reset - int(time.time()))
    return problem(
        429,
        f"Too many requests: the limit is {verdict.limit}.",
        headers={"Retry-After": str(retry_after)},
    )


def _add_limit_headers(response: Response) -> Response:
    verdict: Verdict | None = g.get("default_limit")
    if verdict is not None:
        response.headers["X-RateLimit-Limit"] = str(verdict.limit.amount)
        response.headers["X-RateLimit-Remaining"] = str(verdict.remaining)
        response.headers["X-RateLimit-Reset"] = str(verdict.reset)
    return response
