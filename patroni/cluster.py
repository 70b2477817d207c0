"""Ask a Patroni cluster about itself through its REST API (standard library only).

    python patroni/cluster.py wait SECONDS REST_URL...     until one leader, every other member
                                                           streaming and a synchronous standby
    python patroni/cluster.py list REST_URL...             one line per member
    python patroni/cluster.py leader REST_URL...           "NAME PORT" of the leader
    python patroni/cluster.py switchover REST_URL... [--candidate NAME]

scripts/patroni.sh drives it; the failover tests import it.
"""

from __future__ import annotations

import json
import sys
import time
import urllib.error
import urllib.request
from typing import Any

TIMEOUT = 2.0


def _request(
    url: str, method: str = "GET", body: dict[str, Any] | None = None, timeout: float = TIMEOUT
) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Content-Type": "application/json"}
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            raw = response.read()
            status = response.status
    except urllib.error.HTTPError as error:
        raw, status = error.read(), error.code
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw.decode(errors="replace")


def members(rest_urls: list[str]) -> list[dict[str, Any]]:
    """The members as the first answering node sees them (GET /cluster)."""
    for url in rest_urls:
        try:
            status, body = _request(url.rstrip("/") + "/cluster")
        except OSError:
            continue
        if status == 200 and isinstance(body, dict):
            return body.get("members", [])
    return []


def leader(rest_urls: list[str]) -> dict[str, Any] | None:
    return next((m for m in members(rest_urls) if m.get("role") in {"leader", "standby_leader"}), None)


def is_healthy(found: list[dict[str, Any]], expected: int) -> bool:
    """One running leader, every other member streaming (or running) and one of them sync."""
    if len(found) < expected:
        return False
    leaders = [m for m in found if m.get("role") == "leader" and m.get("state") == "running"]
    others = [m for m in found if m.get("role") != "leader"]
    replicating = all(m.get("state") in {"streaming", "running"} for m in others)
    has_sync = expected < 2 or any(m.get("role") == "sync_standby" for m in others)
    return len(leaders) == 1 and replicating and has_sync


def wait_healthy(rest_urls: list[str], seconds: float) -> list[dict[str, Any]]:
    deadline = time.monotonic() + seconds
    found: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        found = members(rest_urls)
        if is_healthy(found, len(rest_urls)):
            return found
        time.sleep(0.5)
    raise TimeoutError(f"cluster not healthy after {seconds:.0f}s: {format_members(found) or 'no answer'}")


def switchover(rest_urls: list[str], candidate: str | None = None) -> str:
    """A planned switchover away from the current leader; returns Patroni's answer."""
    current = leader(rest_urls)
    if current is None:
        raise RuntimeError("no leader to switch over from")
    body: dict[str, Any] = {"leader": current["name"]}
    if candidate:
        body["candidate"] = candidate
    base = str(current["api_url"]).rsplit("/patroni", 1)[0]  # the leader's own REST API
    # Patroni answers once the new leader is promoted (or the attempt failed).
    status, answer = _request(base + "/switchover", "POST", body, timeout=60)
    if status != 200:
        raise RuntimeError(f"switchover refused ({status}): {answer}")
    return answer if isinstance(answer, str) else json.dumps(answer)


def format_members(found: list[dict[str, Any]]) -> str:
    lines = []
    for m in found:
        lag = m.get("lag", m.get("receive_lag", ""))
        lines.append(
            f"{m.get('name', '?'):<8} {m.get('role', '?'):<13} {m.get('state', '?'):<10} "
            f"{m.get('host', '?')}:{m.get('port', '?')}  timeline {m.get('timeline', '?')}  lag {lag}"
        )
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    command, args = argv[0], argv[1:]
    if command == "wait":
        found = wait_healthy(args[1:], float(args[0]))
        print(format_members(found))
    elif command == "list":
        found = members(args)
        if not found:
            print("no member answered", file=sys.stderr)
            return 1
        print(format_members(found))
    elif command == "leader":
        current = leader(args)
        if current is None:
            return 1
        print(current["name"], current["port"])
    elif command == "switchover":
        candidate = None
        if "--candidate" in args:
            at = args.index("--candidate")
            candidate = args[at + 1]
            args = args[:at] + args[at + 2 :]
        print(switchover(args, candidate))
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
