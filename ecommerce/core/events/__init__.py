"""Live events: order and stock changes pushed to clients as Server-Sent Events.

- hub.py: the per-process hub (streams held, one Redis subscription, stock coalescing).
- stream.py: the ``text/event-stream`` response and its heartbeat.
- publish.py: what a transaction notifies, sent after its commit (after_commit.py's last step).
"""

from ecommerce.core.events.hub import Hub, Topic, register_topic
from ecommerce.core.events.publish import forget_notices, notify_after_commit, publish_committed
from ecommerce.core.events.stream import Event, event_stream, stream_response

__all__ = [
    "Event",
    "Hub",
    "Topic",
    "event_stream",
    "forget_notices",
    "init_events",
    "notify_after_commit",
    "publish_committed",
    "register_topic",
    "stream_response",
]


def init_events(app) -> None:
    """The app's hub; it starts listening with its first stream."""
    if not app.config.get("EVENTS_CHANNEL"):
        # Pub/sub ignores Redis's database numbers: the key prefix keeps apps apart.
        app.config["EVENTS_CHANNEL"] = app.config["CACHE_KEY_PREFIX"] + "events"
    app.extensions["events"] = Hub(app)
