"""The checks scripts/stack.sh makes before and after it starts the stack (run with .venv's Python).

    checks.py ports PORT...                     every port is free on 127.0.0.1
    checks.py database URL                      PostgreSQL answers; the database exists (made if not)
    checks.py redis URL                         Redis answers
    checks.py wait SECONDS PIDS URL...          every URL answers 200 within SECONDS, while every
                                                PID (comma-separated) still runs

Each prints what is wrong and exits 1 when a check fails.
"""

from __future__ import annotations

import os
import socket
import sys
import time
import urllib.error
import urllib.request

HOST = "127.0.0.1"


def ports(*numbers: str) -> str | None:
    taken = []
    for number in numbers:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((HOST, int(number)))
            except OSError:
                taken.append(number)
    if taken:
        return f"port(s) {', '.join(taken)} on {HOST} already in use (set the STACK_*PORT* variables)"
    return None


def database(url: str) -> str | None:
    import psycopg2
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if not parsed.drivername.startswith("postgres"):
        return f"DATABASE_URL must be a PostgreSQL URL (two instances share it), not {parsed.drivername}"
    where = f"{parsed.host or HOST}:{parsed.port or 5432}"
    try:
        admin = psycopg2.connect(
            host=parsed.host or HOST,
            port=parsed.port or 5432,
            user=parsed.username or "postgres",
            password=parsed.password,
            dbname="postgres",
            connect_timeout=5,
        )
    except psycopg2.OperationalError as exc:
        return f"PostgreSQL at {where} does not answer: {exc}".strip()
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (parsed.database,))
        if cursor.fetchone() is None:
            cursor.execute(f'CREATE DATABASE "{parsed.database}"')
            print(f"created database {parsed.database} on {where}")
    admin.close()
    return None


def redis(url: str) -> str | None:
    import redis as redis_client

    try:
        redis_client.Redis.from_url(url, socket_connect_timeout=3).ping()
    except redis_client.RedisError as exc:
        return f"Redis at {url} does not answer: {exc}"
    return None


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (exited, not yet reaped by its parent) is not running.
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def wait(seconds: str, pids: str, *urls: str) -> str | None:
    deadline = time.monotonic() + float(seconds)
    watched = [int(pid) for pid in pids.split(",") if pid]
    pending = list(urls)
    while pending:
        dead = [pid for pid in watched if not _running(pid)]
        if dead:
            return f"process(es) {', '.join(map(str, dead))} exited while starting"
        pending = [url for url in pending if not _answers(url)]
        if not pending:
            break
        if time.monotonic() >= deadline:
            return f"no answer within {seconds}s from {', '.join(pending)}"
        time.sleep(0.25)
    return None


CHECKS = {"ports": ports, "database": database, "redis": redis, "wait": wait}

if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in CHECKS:
        sys.exit(__doc__)
    problem = CHECKS[sys.argv[1]](*sys.argv[2:])
    if problem:
        print(problem, file=sys.stderr)
        sys.exit(1)
