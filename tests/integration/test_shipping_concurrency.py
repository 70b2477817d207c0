"""Two admins adding legs at once on real PostgreSQL: each leg is harmless alone, the two together
would close a cycle of negative cost. The table lock serialises the writers, so exactly one leg
is added and the other is refused with 409, every time."""

from __future__ import annotations

from ecommerce.extensions import db
from ecommerce.shipping.models import ShippingLeg
from tests.factories import AdminFactory
from tests.helpers import bearer, login, run_concurrently

PAIRS = 8


def test_concurrent_legs_never_close_a_negative_cycle(make_instance):
    a, b = make_instance(), make_instance()
    with a.app_context():
        admin = AdminFactory().username
    setup = a.test_client()
    headers = bearer(login(setup, admin)["access_token"])
    for index in range(PAIRS):
        for side in ("P", "Q"):
            body = {"code": f"{side}{index}", "name": f"{side}{index}"}
            assert setup.post("/api/shipping/zones/", json=body, headers=headers).status_code == 201

    def add(client, from_zone: str, to_zone: str, cost: str):
        body = {"from_zone": from_zone, "to_zone": to_zone, "cost": cost, "days": 1}
        return lambda: client.post("/api/shipping/legs/", json=body, headers=headers)

    calls = []
    for index in range(PAIRS):
        calls.append(add(a.test_client(), f"P{index}", f"Q{index}", "-5.00"))
        calls.append(add(b.test_client(), f"Q{index}", f"P{index}", "3.00"))
    statuses = [response.status_code for response in run_concurrently(calls)]

    for index in range(PAIRS):
        assert sorted(statuses[2 * index : 2 * index + 2]) == [201, 409], statuses
    with a.app_context():
        assert db.session.query(ShippingLeg).count() == PAIRS
        db.session.remove()
