"""The app on a real Patroni cluster (etcd + three PostgreSQL nodes, synchronous replication):
reads routed to replicas with read-your-writes, and checkouts at a steady rate through a leader
crash and through a planned switchover, with nothing lost, nothing duplicated, nothing oversold.
"""

from __future__ import annotations

import os
import re
import signal
import statistics
import time
import uuid
from collections.abc import Iterator
from contextlib import closing, contextmanager

import psycopg2
import pytest
import requests

from tests.integration.cluster import CLUSTER_DIR, CheckoutLoad, Cluster, patroni_cluster, write_figures
from tests.integration.servers import clean_env, gunicorn, run_cli, wait_until
from tests.integration.test_observability import _total, cluster_expressions

BUYERS = 6
PRODUCTS = 40
INITIAL_STOCK = 100_000
WRITE_GAP_LIMIT = 30.0


@pytest.fixture(scope="module")
def cluster() -> Cluster:
    with patroni_cluster() as running:
        yield running


@pytest.fixture(scope="module")
def shop(cluster, app, tmp_path_factory):
    """The schema and a catalog on the cluster, and the app in gunicorn pointed at it."""
    redis_url = app.config["REDIS_URL"]
    env = clean_env(
        DATABASE_URL=cluster.database_url,
        DATABASE_REPLICA_URL=cluster.replica_url,
        REDIS_URL=redis_url,
        CACHE_KEY_PREFIX="failover-test:",
        RATELIMIT_KEY_PREFIX="failover-test-rl",
        AUTH_RATE_LIMIT="10000/minute",
        WEB_CONCURRENCY="2",
        DB_RETRY_SECONDS="3",
        LOG_LEVEL="warning",
        SANDBOX_GATEWAY_PATH=str(tmp_path_factory.mktemp("gateway") / "sandbox.db"),
        MAIL_FOLDER=str(tmp_path_factory.mktemp("mail")),
        INSTANCE_PATH=str(tmp_path_factory.mktemp("instance")),
        # /metrics sums both workers' samples.
        PROMETHEUS_MULTIPROC_DIR=str(tmp_path_factory.mktemp("metrics")),
    )
    run_cli(["db", "upgrade"], env)
    run_cli(["seed", "--products", str(PRODUCTS)], env)
    with cluster.primary() as connection, connection.cursor() as cursor:
        cursor.execute("UPDATE products SET stock_quantity = %s", (INITIAL_STOCK,))
        cursor.execute("SELECT id FROM products ORDER BY id")
        product_ids = [row[0] for row in cursor.fetchall()]
    log_path = tmp_path_factory.mktemp("gunicorn") / "gunicorn.log"
    with gunicorn(env, log_path) as server:
        tokens = [_customer_token(server.base_url) for _ in range(BUYERS)]
        yield server, tokens, product_ids


def _customer_token(base_url: str) -> str:
    name = "buyer" + uuid.uuid4().hex[:10]
    password = "password123"
    created = requests.post(
        base_url + "/api/auth/register",
        json={"username": name, "email": f"{name}@shop.example", "password": password},
        timeout=10,
    )
    assert created.status_code == 201, created.text
    login = requests.post(
        base_url + "/api/auth/login", json={"username": name, "password": password}, timeout=10
    )
    assert login.status_code == 200, login.text
    return login.json()["access_token"]


def _metrics(base_url: str) -> str:
    return requests.get(base_url + "/metrics", timeout=10).text


def _metric(base_url: str, name: str, **labels: str) -> float:
    return _total(_metrics(base_url), name, **labels)


def _read_pool_on_the_standbys(cluster: Cluster, server, product_id: int) -> None:
    """Read until no read pool connection is on the leader. prefer-standby takes the primary
    when no standby answered at connect time (the shop started while one was still starting);
    the app replaces such a connection when a read finds it there, at most once a second."""
    leader_port = int(cluster.leader()["port"])

    def off_the_leader() -> bool:
        for _ in range(8):
            requests.get(server.base_url + f"/api/products/{product_id}/reviews/", timeout=10)
        with cluster.connect(leader_port) as connection, connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'ecommerce-read'")
            return cursor.fetchone()[0] == 0

    wait_until(off_the_leader, 60, interval=0.5, message="the read pool to leave the leader")


# -- read routing ----------------------------------------------------------------------------


def test_reads_go_to_standbys_and_writes_to_the_primary(cluster, shop):
    server, tokens, product_ids = shop
    cluster.wait_healthy()
    before = _metric(server.base_url, "ecommerce_db_routed_reads_total", target="replica")
    with CheckoutLoad(server.base_url, tokens[:2], product_ids, readers=2) as load:
        time.sleep(3)
    assert load.record.crashed_threads == []
    assert load.record.read_failures == []
    assert load.record.created, "no checkout went through"
    routed = [line for line in _metrics(server.base_url).splitlines() if "routed_reads_total{" in line]
    assert _metric(server.base_url, "ecommerce_db_routed_reads_total", target="replica") > before, routed

    # Who is connected where: the app's write pool only to the primary, its read pool only to
    # the standbys (prefer-standby falls back to the primary only when no standby is up, and
    # such a connection is replaced once a read finds it there).
    _read_pool_on_the_standbys(cluster, server, product_ids[0])
    leader_port = int(cluster.leader()["port"])
    seen: dict[str, set[int]] = {"ecommerce": set(), "ecommerce-read": set()}
    for port in cluster.pg_ports:
        with cluster.connect(port) as connection, connection.cursor() as cursor:
            cursor.execute(
                "SELECT application_name, count(*) FROM pg_stat_activity"
                " WHERE application_name IN ('ecommerce', 'ecommerce-read') GROUP BY 1"
            )
            for name, count in cursor.fetchall():
                if count:
                    seen[name].add(port)
    assert seen["ecommerce"] == {leader_port}, seen
    assert seen["ecommerce-read"] and leader_port not in seen["ecommerce-read"], seen

    lag = _metric(server.base_url, "ecommerce_db_replicas_streaming")
    assert lag == 2, "both standbys stream, as the primary's pg_stat_replication says"
    # Every series the cluster's dashboard panels and alert rules read is served.
    served = {line.split("{")[0].split(" ")[0] for line in _metrics(server.base_url).splitlines()}
    assert cluster_expressions()
    for expr in cluster_expressions():
        names = set(re.findall(r"ecommerce_[a-z_]+", expr))
        assert names and names <= served, (expr, names - served)


def test_a_writer_reads_its_own_write_while_the_standbys_lag(cluster, shop):
    """Replay stalled on both standbys: they still answer, but they lack the new review. The
    review list read right after the write must have it (served by the primary: the catalog's
    write token is ahead of the standbys), and a read that no write is pending for is still
    served by a standby."""
    server, tokens, product_ids = shop
    cluster.wait_healthy()
    headers = {"Authorization": f"Bearer {tokens[0]}"}
    product_id = product_ids[0]
    _read_pool_on_the_standbys(cluster, server, product_id)
    with _replay_stalled(cluster) as standbys:
        caught_up_before = _metric(server.base_url, "ecommerce_db_routed_reads_total", reason="caught_up")
        listed = requests.get(server.base_url + f"/api/products/{product_id}/reviews/", timeout=10)
        assert listed.status_code == 200
        assert (
            _metric(server.base_url, "ecommerce_db_routed_reads_total", reason="caught_up") > caught_up_before
        ), "a stalled standby no longer served a read that nothing was pending for"
        behind_before = _metric(server.base_url, "ecommerce_db_routed_reads_total", reason="replica_behind")
        comment = "written while the standbys lag " + uuid.uuid4().hex
        created = requests.post(
            server.base_url + f"/api/products/{product_id}/reviews/",
            json={"rating": 4, "comment": comment},
            headers=headers,
            timeout=10,
        )
        assert created.status_code == 201, created.text
        for _ in range(5):
            listed = requests.get(server.base_url + f"/api/products/{product_id}/reviews/", timeout=10)
            assert listed.status_code == 200
            assert comment in [review.get("comment") for review in listed.json()], "own write not read"
        routed = [line for line in _metrics(server.base_url).splitlines() if "routed_reads_total{" in line]
        assert (
            _metric(server.base_url, "ecommerce_db_routed_reads_total", reason="replica_behind")
            > behind_before
        ), routed
        # The standbys were behind all along (the test would pass for the wrong reason otherwise):
        # the stalled lock is replayed once, so a replay still waiting on it never went past it.
        for standby in standbys:
            assert _replay_waits_on_the_stall(standby), "replay went on (max_standby_streaming_delay passed?)"
            with standby.cursor() as cursor:
                cursor.execute("SELECT count(*) FROM reviews WHERE comment = %s", (comment,))
                assert cursor.fetchone()[0] == 0


STALL_TABLE = "test_replay_stall"


@contextmanager
def _replay_stalled(cluster: Cluster) -> Iterator[list]:
    """Stall WAL replay on every standby the way a long report query on a replica does: a
    recovery conflict. Each standby reads a scratch table in an open transaction; the primary then
    locks it ACCESS EXCLUSIVE. Replaying that lock waits for the standby's reader (up to
    max_standby_streaming_delay, 30 s in patroni.yml.in), and every later WAL record waits behind
    it, while the standby goes on answering queries. Yields an autocommit connection to each.

    (pg_wal_replay_pause() cannot do this unless Patroni is in maintenance mode: it resumes a
    paused replay in its next HA loop on PostgreSQL 14 and later, so a pause lasted at most
    loop_wait, 2 s.)
    """
    ports = cluster.standby_ports()
    readers: list = []
    watchers: list = []
    try:
        with closing(cluster.primary()) as primary:
            primary.autocommit = True
            with primary.cursor() as cursor:
                cursor.execute(f"CREATE TABLE IF NOT EXISTS {STALL_TABLE} (id integer)")
                cursor.execute("SELECT pg_current_wal_lsn()")
                created_at = cursor.fetchone()[0]
        for port in ports:
            readers.append(cluster.connect(port))
            watchers.append(cluster.connect(port))
            watchers[-1].autocommit = True

        def replayed(connection) -> bool:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", (created_at,))
                return cursor.fetchone()[0]

        wait_until(lambda: all(map(replayed, watchers)), 15, message="the scratch table on the standbys")
        for reader in readers:  # each holds ACCESS SHARE on the table until it is closed
            with reader.cursor() as cursor:
                cursor.execute(f"SELECT count(*) FROM {STALL_TABLE}")
        with closing(cluster.primary()) as primary:
            with primary.cursor() as cursor:
                cursor.execute(f"LOCK TABLE {STALL_TABLE} IN ACCESS EXCLUSIVE MODE")
            primary.commit()
        wait_until(
            lambda: all(_replay_waits_on_the_stall(w) for w in watchers),
            15,
            interval=0.1,
            message="replay to wait on the scratch table's lock on both standbys",
        )
        yield watchers
    finally:
        try:
            # Closing ends a reader's transaction on the server (and does not raise on a link
            # the standby already cut: past max_standby_streaming_delay it ends the reader).
            for connection in readers + watchers:
                connection.close()
        finally:
            with closing(cluster.primary()) as primary:
                primary.autocommit = True
                with primary.cursor() as cursor:
                    cursor.execute(f"DROP TABLE IF EXISTS {STALL_TABLE}")


def _replay_waits_on_the_stall(standby) -> bool:
    """The standby's startup process (its WAL replay) is waiting for a lock on the scratch table."""
    with standby.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_locks JOIN pg_stat_activity USING (pid)"
            " WHERE backend_type = 'startup' AND NOT granted AND relation = %s::regclass",
            (STALL_TABLE,),
        )
        return cursor.fetchone()[0] == 1


# -- failover ------------------------------------------------------------------------------


def _run_through(cluster: Cluster, shop, disruption, name: str, capsys) -> dict:
    """Steady checkouts; ``disruption()`` after a few seconds; load until writes are back."""
    server, tokens, product_ids = shop
    cluster.wait_healthy()
    old_leader = cluster.leader()["name"]
    with cluster.primary() as connection, connection.cursor() as cursor:
        cursor.execute("SELECT coalesce(max(id), 0) FROM orders")
        orders_before = cursor.fetchone()[0]
    with CheckoutLoad(server.base_url, tokens, product_ids) as load:
        time.sleep(4)
        steady = len(load.record.write_ok)
        struck = time.monotonic()
        disruption()
        done = time.monotonic()  # the node is dead, or the switchover is reported complete
        load.wait_for_write_after(done, timeout=60)
        # Writes resumed: a little more load on the new primary, then stop.
        time.sleep(3)
    record = load.record
    new_leader = wait_until(lambda: cluster.members() and cluster.leader()["name"], 60, message="a leader")

    # The figures. Writes were unavailable for the longest stretch without a successful
    # checkout that reaches past the disruption (normally checkouts complete every few ms).
    times = sorted(record.write_ok)
    gaps = [(b - a, a, b) for a, b in zip(times, times[1:], strict=False)]
    outage, _last_before, first_after = max((gap for gap in gaps if gap[2] > struck), default=(0, 0, 0))
    figures = {
        "old_leader": old_leader,
        "new_leader": new_leader,
        "checkouts_201": len(record.created),
        "checkouts_per_second_before": round(steady / 4, 1),
        "write_unavailable_seconds": round(outage, 2),
        "longest_gap_ended_at_seconds": round(first_after - struck, 2),
        "disruption_command_seconds": round(done - struck, 2),
        "median_gap_between_checkouts_seconds": round(statistics.median(gap[0] for gap in gaps), 3),
        "refused_write_attempts": len(record.write_errors),
        "reads_ok": record.read_ok,
        "reads_failed": len(record.read_failures),
    }
    with capsys.disabled():  # shown by `make test` too, not only with -s
        print(f"\n{name}: " + ", ".join(f"{key}={value}" for key, value in figures.items()))
    write_figures(name, figures)

    # Every checkout got its answer, and the answers are the truth.
    assert record.crashed_threads == [], (
        record.crashed_threads,
        _server_errors(server, record.crashed_threads),
    )
    assert record.bad_refusals == [], record.bad_refusals[:3]
    assert record.unresolved == [], f"checkouts never answered: {record.unresolved}"
    assert record.read_failures == [], [(round(o.at - struck, 2), o.status) for o in record.read_failures]
    assert outage < WRITE_GAP_LIMIT, f"writes were unavailable for {outage:.1f}s"
    _assert_orders_match(cluster, record.created, orders_before)
    return figures


def _server_errors(server, failures: list[str]) -> list[str]:
    """The app's log lines (with their tracebacks) for the request ids in the failures: a 500
    says what went wrong only there."""
    ids = set(re.findall(r'"request_id": "([0-9a-f]+)"', " ".join(failures)))
    return [line for line in server.log().splitlines() if any(rid in line for rid in ids)]


def _assert_orders_match(cluster: Cluster, created: dict[str, int], orders_before: int) -> None:
    with cluster.primary() as connection, connection.cursor() as cursor:
        cursor.execute(
            "SELECT key, response_status, response_body FROM idempotency_keys WHERE scope = 'orders:create'"
        )
        keys = {key: (status, body) for key, status, body in cursor.fetchall()}
        cursor.execute("SELECT id FROM orders WHERE id > %s", (orders_before,))
        orders = {row[0] for row in cursor.fetchall()}
        cursor.execute(
            "SELECT p.id, p.stock_quantity, coalesce(sum(oi.quantity), 0) FROM products p"
            " LEFT JOIN order_items oi ON oi.product_id = p.id GROUP BY p.id"
        )
        stock = cursor.fetchall()
    # Every order answered 201 exists ...
    missing = {key: order_id for key, order_id in created.items() if order_id not in orders}
    assert not missing, f"orders answered 201 but gone after the failover: {missing}"
    # ... and no order exists that was not answered 201 (each key made one order, at most).
    assert orders == set(created.values()), f"orders nobody was told about: {orders - set(created.values())}"
    assert len(set(created.values())) == len(created)
    for key in created:
        status, _body = keys[key]
        assert status == 201
    # Stock: every unit sold is in exactly one order line; none sold twice, none lost.
    for product_id, quantity, sold in stock:
        assert quantity + sold == INITIAL_STOCK, (product_id, quantity, sold)
        assert quantity >= 0


def test_checkouts_survive_a_planned_switchover(cluster, shop, capsys):
    figures = _run_through(
        cluster, shop, lambda: cluster.script("switchover", timeout=60), "switchover", capsys
    )
    assert figures["new_leader"] != figures["old_leader"]


def test_checkouts_survive_a_leader_crash(cluster, shop, capsys):
    crashed: list[str] = []

    def crash() -> None:
        leader = cluster.leader()
        output = cluster.script("crash", timeout=30)
        crashed.append(re.search(r"crashed (\S+):", output).group(1))
        assert crashed[0] == leader["name"], (leader, output)
        # Really dead: neither its PostgreSQL nor its Patroni answers any more.
        with pytest.raises(psycopg2.OperationalError):
            cluster.connect(int(leader["port"])).close()
        with pytest.raises(OSError):
            requests.get(str(leader["api_url"]), timeout=2)

    try:
        figures = _run_through(cluster, shop, crash, "leader_crash", capsys)
        assert figures["new_leader"] != crashed[0]
        # The crash was real: writes were refused until the leader key expired (ttl 20 s).
        assert figures["refused_write_attempts"] > 0 and figures["write_unavailable_seconds"] > 5
    finally:
        if crashed:
            # The crashed node comes back as a replica of the new leader (pg_rewind).
            cluster.script("start", crashed[0], timeout=30)
            cluster.wait_healthy(150)


def test_checkouts_survive_the_loss_of_the_synchronous_standby(cluster, shop, capsys):
    """The standby every commit waits for dies: Patroni names the other one synchronous."""
    crashed: list[str] = []

    def crash_sync_standby() -> None:
        sync = next(m["name"] for m in cluster.members() if m.get("role") == "sync_standby")
        cluster.script("crash", sync, timeout=30)
        crashed.append(sync)

    try:
        figures = _run_through(cluster, shop, crash_sync_standby, "sync_standby_crash", capsys)
        assert figures["new_leader"] == figures["old_leader"]  # no failover for a standby
        assert figures["write_unavailable_seconds"] < 15
    finally:
        if crashed:
            cluster.script("start", crashed[0], timeout=30)
            cluster.wait_healthy(150)


def test_checkouts_go_on_while_etcd_is_unreachable(cluster, shop, capsys):
    """etcd frozen for longer than the leader key's ttl: with failsafe_mode the primary, which
    still reaches every member, stays primary (without it, it would demote itself after
    retry_timeout and writes would stop for the whole outage)."""
    etcd = cluster.pid_of("etcd")

    def freeze_etcd() -> None:
        os.kill(etcd, signal.SIGSTOP)
        try:
            time.sleep(25)
        finally:
            os.kill(etcd, signal.SIGCONT)

    try:
        figures = _run_through(cluster, shop, freeze_etcd, "etcd_outage", capsys)
    finally:
        os.kill(etcd, signal.SIGCONT)
    assert figures["new_leader"] == figures["old_leader"]
    assert figures["write_unavailable_seconds"] < 5, figures


def test_backups_follow_the_primary_of_the_cluster(cluster, shop, tmp_path):
    """`flask db drill` and `flask db restore --create` with the multi-host URLs: the database
    they create exists only on the primary at first, so every step must reach that node."""
    env = clean_env(DATABASE_URL=cluster.database_url, REDIS_URL="", LOG_LEVEL="warning")
    drill = run_cli(["db", "drill"], env)
    assert "Drill passed" in drill.stdout, drill.stdout
    dump = tmp_path / "shop.dump"
    run_cli(["db", "backup", "--output", str(dump)], env)
    target = cluster.database_url.replace("/ecommerce?", "/restored_copy?")
    restored = run_cli(["db", "restore", str(dump), "--create", "--target-url", target], env)
    assert "Restored" in restored.stdout, restored.stdout
    connection = cluster.primary()
    connection.autocommit = True  # DROP DATABASE runs outside a transaction
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM pg_database WHERE datname LIKE 'ecommerce_drill_%'")
            assert cursor.fetchone()[0] == 0  # the drill cleans up after itself
            cursor.execute("DROP DATABASE restored_copy WITH (FORCE)")
    finally:
        connection.close()


def test_wal_segments_are_archived(cluster, shop):
    """archive_mode: a finished WAL segment is copied to the archive (point-in-time recovery)."""
    archive = CLUSTER_DIR / "wal_archive"
    connection = cluster.primary()
    connection.autocommit = True
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT archived_count FROM pg_stat_archiver")
            archived_before = cursor.fetchone()[0]
            cursor.execute("SELECT pg_walfile_name(pg_switch_wal())")
            segment = cursor.fetchone()[0]

        def archived() -> bool:
            with connection.cursor() as cursor:
                cursor.execute("SELECT archived_count, failed_count FROM pg_stat_archiver")
                count, _failed = cursor.fetchone()
            return count > archived_before and (archive / segment).exists()

        wait_until(archived, 30, interval=0.3, message=f"{segment} in {archive}")
    finally:
        connection.close()
