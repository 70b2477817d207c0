"""Server-Sent Events responses: the wire format, the heartbeat, and a stream's life.

The view checks access and subscribes first, then reads the state to start from, so that no
change falls between the two (a change after the subscription wakes the stream, which reads
again). The response's body runs after the request has ended: it holds no database connection
and no app context while it waits, only a queue; when woken it reads in a short app context of
its own.
"""

from __future__ import annotations

import json
import queue
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from flask import Flask, Response, current_app

from ecommerce.core.events.hub import EVENTS_SENT, WAKE, Hub, StreamsFull, Subscription
from ecommerce.errors import ServiceUnavailable


@dataclass(frozen=True)
class Event:
    name: str
    data: dict[str, Any]
    id: int | None = None


def encode(event: Event) -> bytes:
    lines = []
    if event.id is not None:
        lines.append(f"id: {event.id}")
    lines.append(f"event: {event.name}")
    lines.append("data: " + json.dumps(event.data, separators=(",", ":")))
    return ("\n".join(lines) + "\n\n").encode()


HEARTBEAT = b": keep-alive\n\n"
# Tells EventSource how long to wait before reconnecting (ms), once, at the start.
RETRY = b"retry: 2000\n\n"


def stream_response(description: str) -> dict[str, Any]:
    """The OpenAPI 200 response of a stream route (``@blp.doc(responses={"200": ...})``)."""
    return {"description": description, "content": {"text/event-stream": {"schema": {"type": "string"}}}}


def hub() -> Hub:
    return current_app.extensions["events"]


def _subscribe(hub: Hub, kind: str, key: int) -> Subscription:
    try:
        return hub.subscribe(kind, key)
    except StreamsFull:
        raise ServiceUnavailable(
            "Too many live streams on this server; reconnect shortly.", retry_after=5
        ) from None


def event_stream(
    kind: str,
    key: int,
    first: Callable[[], Iterable[Event]],
    *,
    read_new: Callable[[Event | None], list[Event]] | None = None,
    shared_event: Callable[[dict[str, Any]], Event | None] | None = None,
    until: float | None = None,
) -> Response:
    """The ``text/event-stream`` response of the changes of ``kind`` ``key``.

    The stream subscribes first, then calls ``first()`` for what to send at once (so a change
    made in between wakes it rather than being missed); 503 when this worker holds its most
    streams already. Then, per item on the subscription's queue: a WAKE calls
    ``read_new(last event sent)`` in an app context (order streams, also on every heartbeat, so
    a lost notice costs at most one heartbeat's delay); shared data (stock) becomes an event by
    ``shared_event(data)`` unless it equals the last one sent, and an idle shared stream asks the
    hub to read its value again on its heartbeat (once for all the streams of the key).
    ``until`` (epoch seconds): the stream ends then (its access token expires).
    """
    app = current_app._get_current_object()
    heartbeat = app.config["EVENTS_HEARTBEAT_SECONDS"]
    hub_of_app = hub()
    sub = _subscribe(hub_of_app, kind, key)
    try:
        first_events = list(first())
    except BaseException:
        hub_of_app.unsubscribe(sub)
        raise
    body = _body(app, hub_of_app, sub, first_events, heartbeat, read_new, shared_event, until)
    response = Response(body, mimetype="text/event-stream")
    response.headers["Cache-Control"] = "no-cache, no-store"
    response.headers["X-Accel-Buffering"] = "no"  # nginx: pass each event on at once
    # A client gone before the body started: closing a generator that never ran skips its
    # ``finally``, so the response's close leaves the hub too (leaving twice is harmless).
    response.call_on_close(lambda: hub_of_app.unsubscribe(sub))
    return response


def _body(
    app: Flask,
    hub: Hub,
    sub: Subscription,
    first: list[Event],
    heartbeat: float,
    read_new: Callable[[Event | None], list[Event]] | None,
    shared_event: Callable[[dict[str, Any]], Event | None] | None,
    until: float | None,
) -> Iterator[bytes]:
    last: Event | None = None
    try:
        chunk = RETRY
        for event in first:
            chunk += encode(event)
            last = event
        yield chunk
        EVENTS_SENT.labels(sub.kind).inc(len(first))
        while True:
            wait = heartbeat
            if until is not None:
                left = until - time.time()
                if left <= 0:
                    return  # the token expired: the client reconnects with a fresh one
                wait = min(wait, left)
            try:
                item = sub.queue.get(timeout=wait)
            except queue.Empty:
                item = None
            events: list[Event] = []
            if item is WAKE or (item is None and read_new is not None):
                with app.app_context():
                    events = read_new(last) if read_new is not None else []
            elif item is None and shared_event is not None:
                hub.refresh(sub.kind, sub.key, heartbeat)  # its value comes on the queue
            elif item is not None and shared_event is not None:
                event = shared_event(item)
                if event is not None and (last is None or event.data != last.data):
                    events = [event]
            if events:
                yield b"".join(encode(event) for event in events)
                EVENTS_SENT.labels(sub.kind).inc(len(events))
                last = events[-1]
            elif item is None:
                yield HEARTBEAT  # a write also finds a client that has gone
    finally:
        hub.unsubscribe(sub)
