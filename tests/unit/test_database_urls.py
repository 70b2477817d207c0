"""Database URLs as operators write them, and WAL positions as the read-your-writes tokens hold them."""

from __future__ import annotations

import pytest
from sqlalchemy.engine import make_url

from ecommerce.config import libpq_url, normalise_database_url
from ecommerce.core.db.replicas import int_to_lsn, lsn_to_int

CLUSTER = "postgresql://postgres@127.0.0.1:5433,127.0.0.1:5434,127.0.0.1:5435/ecommerce?target_session_attrs=read-write"


def test_a_libpq_multi_host_url_becomes_sqlalchemy_host_parameters():
    url = normalise_database_url(CLUSTER)
    parsed = make_url(url)
    assert parsed.drivername == "postgresql+psycopg2"
    assert parsed.query["host"] == ("127.0.0.1:5433", "127.0.0.1:5434", "127.0.0.1:5435")
    assert parsed.query["target_session_attrs"] == "read-write"
    assert parsed.database == "ecommerce" and parsed.username == "postgres"
    # What psycopg2 is given: libpq's comma lists.
    _args, kwargs = parsed.get_dialect()().create_connect_args(parsed)
    assert kwargs["host"] == "127.0.0.1,127.0.0.1,127.0.0.1"
    assert kwargs["port"] == "5433,5434,5435"


@pytest.mark.parametrize(
    "given, expected",
    [
        ("postgres://u:p@db:5432/shop", "postgresql+psycopg2://u:p@db:5432/shop"),
        ("postgresql://u@db/shop", "postgresql+psycopg2://u@db/shop"),
        ("postgresql+psycopg2://u@db/shop", "postgresql+psycopg2://u@db/shop"),
        ("postgresql://u:p@a:1,b:2/shop", "postgresql+psycopg2://u:p@/shop?host=a:1&host=b:2"),
        ("sqlite:////tmp/shop.db", "sqlite:////tmp/shop.db"),
    ],
)
def test_normalised_urls(given, expected):
    assert normalise_database_url(given) == expected


def test_libpq_url_round_trips_the_multi_host_form():
    assert libpq_url(normalise_database_url(CLUSTER)) == CLUSTER
    replica = CLUSTER.replace("read-write", "prefer-standby&load_balance_hosts=random")
    assert libpq_url(normalise_database_url(replica)) == replica


@pytest.mark.parametrize("lsn", ["0/0", "0/16B3748", "16/B374D848", "FFFFF/FFFFFFFF"])
def test_wal_positions_round_trip_and_order_as_numbers(lsn):
    assert int_to_lsn(lsn_to_int(lsn)) == lsn
    assert lsn_to_int("1/0") > lsn_to_int("0/FFFFFFFF")
