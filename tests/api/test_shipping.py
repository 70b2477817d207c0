"""Shipping: the zone and leg lifecycles, validation, the negative-cycle refusal, and quotes on a
known network (rebates, parallel legs, ties, the clamp at 0.00) that follow every write at once."""

from __future__ import annotations

import pytest

from tests.helpers import assert_pagination, assert_problem

ZONES = "/api/shipping/zones/"
LEGS = "/api/shipping/legs/"
QUOTE = "/api/shipping/quote/"


def add_zone(client, headers, code: str, *, warehouse: bool = False) -> dict:
    body = {"code": code, "name": f"Zone {code}", "is_warehouse": warehouse}
    response = client.post(ZONES, json=body, headers=headers)
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def add_leg(client, headers, from_zone: str, to_zone: str, cost: str, days: int) -> dict:
    body = {"from_zone": from_zone, "to_zone": to_zone, "cost": cost, "days": days}
    response = client.post(LEGS, json=body, headers=headers)
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def quote(client, to: str) -> dict[str, dict]:
    """The quote's options by method."""
    response = client.get(f"{QUOTE}?to={to}")
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["to"] == to and [option["method"] for option in body["options"]] == ["economy", "express"]
    return {option.pop("method"): option for option in body["options"]}


def test_zone_lifecycle(client, admin_headers, user_headers):
    body = {"code": "WH-NORTH", "name": "North warehouse", "is_warehouse": True}
    assert_problem(client.post(ZONES, json=body), 401)
    assert_problem(client.post(ZONES, json=body, headers=user_headers), 403)

    created = client.post(ZONES, json=body, headers=admin_headers)
    assert created.status_code == 201 and created.get_json() == body
    duplicate = client.post(ZONES, json={**body, "name": "Other"}, headers=admin_headers)
    assert "already exists" in assert_problem(duplicate, 409)["detail"]
    add_zone(client, admin_headers, "CITY-2")
    add_zone(client, admin_headers, "AIRPORT")

    first = client.get(f"{ZONES}?page_size=2")  # anyone may read
    assert first.status_code == 200
    assert_pagination(first, total=3, page_size=2)
    assert [zone["code"] for zone in first.get_json()] == ["AIRPORT", "CITY-2"]
    second = client.get(f"{ZONES}?page=2&page_size=2")
    assert [zone["code"] for zone in second.get_json()] == ["WH-NORTH"]

    read = client.get(f"{ZONES}WH-NORTH/")
    assert read.status_code == 200 and read.get_json() == body
    assert_problem(client.get(f"{ZONES}NOWHERE/"), 404)

    assert_problem(client.delete(f"{ZONES}AIRPORT/"), 401)
    assert_problem(client.delete(f"{ZONES}AIRPORT/", headers=user_headers), 403)
    assert client.delete(f"{ZONES}AIRPORT/", headers=admin_headers).status_code == 204
    assert_problem(client.get(f"{ZONES}AIRPORT/"), 404)
    assert_problem(client.delete(f"{ZONES}AIRPORT/", headers=admin_headers), 404)

    add_leg(client, admin_headers, "WH-NORTH", "CITY-2", "4.00", 1)
    in_use = assert_problem(client.delete(f"{ZONES}CITY-2/", headers=admin_headers), 409)
    assert "still used by a leg" in in_use["detail"]
    assert client.get(f"{ZONES}CITY-2/").status_code == 200


@pytest.mark.parametrize(
    "body, field",
    [
        ({"code": "north"}, "code"),
        ({"code": "-NORTH"}, "code"),
        ({"code": "N" * 21}, "code"),
        ({"code": "NORTH\n"}, "code"),  # "$" alone would let a final newline through
        ({"code": "N" * 20 + "\n"}, "code"),
        ({"name": ""}, "name"),
        ({"is_warehouse": "yes"}, "is_warehouse"),
        ({"is_warehouse": 1}, "is_warehouse"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_zone_validation(client, admin_headers, body, field):
    response = client.post(ZONES, json={"code": "NORTH", "name": "North", **body}, headers=admin_headers)
    assert field in assert_problem(response, 422)["errors"]


@pytest.mark.parametrize("code", ["%00", "north", "A%0A", "N" * 300])
def test_a_path_code_no_zone_can_have_is_404(client, admin_headers, code):
    assert_problem(client.get(f"{ZONES}{code}/"), 404)
    assert_problem(client.delete(f"{ZONES}{code}/", headers=admin_headers), 404)


def test_leg_lifecycle(client, admin_headers, user_headers):
    add_zone(client, admin_headers, "WH", warehouse=True)
    add_zone(client, admin_headers, "TOWN")
    body = {"from_zone": "WH", "to_zone": "TOWN", "cost": "-2.50", "days": 3}
    assert_problem(client.post(LEGS, json=body), 401)
    assert_problem(client.post(LEGS, json=body, headers=user_headers), 403)

    rebate = client.post(LEGS, json=body, headers=admin_headers)
    assert rebate.status_code == 201
    leg = rebate.get_json()
    assert leg == {"id": leg["id"], **body}
    other = add_leg(client, admin_headers, "TOWN", "WH", "2.50", 1)  # a zero-cost cycle is fine

    assert_problem(client.get(LEGS), 401)
    assert_problem(client.get(LEGS, headers=user_headers), 403)
    listed = client.get(f"{LEGS}?page_size=1", headers=admin_headers)
    assert listed.status_code == 200 and listed.get_json() == [leg]
    assert_pagination(listed, total=2, page_size=1)

    assert_problem(client.delete(f"{LEGS}{leg['id']}/", headers=user_headers), 403)
    assert client.delete(f"{LEGS}{leg['id']}/", headers=admin_headers).status_code == 204
    assert_problem(client.delete(f"{LEGS}{leg['id']}/", headers=admin_headers), 404)
    assert client.get(LEGS, headers=admin_headers).get_json() == [other]


@pytest.mark.parametrize(
    "body, field",
    [
        ({"to_zone": "ATLANTIS"}, "to_zone"),
        ({"from_zone": "ATLANTIS"}, "from_zone"),
        ({"to_zone": "WH"}, "to_zone"),  # a leg from a zone to itself
        ({"days": 0}, "days"),
        ({"days": 366}, "days"),
        ({"days": "2"}, "days"),
        ({"cost": 2.5}, "cost"),
        ({"cost": "1.999"}, "cost"),
        ({"cost": "-1000000.01"}, "cost"),
        ({"cost": "+2.00"}, "cost"),
        ({"cost": "2e2"}, "cost"),
    ],
)
def test_leg_validation(client, admin_headers, body, field):
    add_zone(client, admin_headers, "WH", warehouse=True)
    add_zone(client, admin_headers, "TOWN")
    payload = {"from_zone": "WH", "to_zone": "TOWN", "cost": "1.00", "days": 1, **body}
    response = client.post(LEGS, json=payload, headers=admin_headers)
    assert field in assert_problem(response, 422)["errors"]
    assert client.get(LEGS, headers=admin_headers).get_json() == []


@pytest.fixture
def network(client, admin_headers) -> None:
    """Two warehouses and a destination D that economy and express reach by different routes.

    - WH-A -> M: 5.00 in 4 days, and in parallel 20.00 in 1 day
    - WH-B -> M: -8.00 in 3 days (a rebate)
    - M -> D: 10.00 in 2 days
    - WH-B -> D: 30.00 in 2 days
    - WH-A -> D: 45.00 in 2 days (as fast as WH-B -> D, dearer: express's tie)
    - WH-A -> E: 1.00 in 3 days, E -> D: 1.00 in 4 days (as cheap as WH-B -> M -> D, slower:
      economy's tie)
    - X -> D: 1.00 in 1 day (X itself is reached by nothing)
    """
    for code in ("WH-A", "WH-B"):
        add_zone(client, admin_headers, code, warehouse=True)
    for code in ("M", "D", "E", "X"):
        add_zone(client, admin_headers, code)
    for leg in (
        ("WH-A", "M", "5.00", 4),
        ("WH-A", "M", "20.00", 1),
        ("WH-B", "M", "-8.00", 3),
        ("M", "D", "10.00", 2),
        ("WH-B", "D", "30.00", 2),
        ("WH-A", "D", "45.00", 2),
        ("WH-A", "E", "1.00", 3),
        ("E", "D", "1.00", 4),
        ("X", "D", "1.00", 1),
    ):
        add_leg(client, admin_headers, *leg)


def test_economy_and_express_take_different_routes(client, network):
    options = quote(client, "D")
    assert options["economy"] == {"cost": "2.00", "days": 5, "route": ["WH-B", "M", "D"]}
    assert options["express"] == {"cost": "30.00", "days": 2, "route": ["WH-B", "D"]}


def test_a_rebate_never_makes_a_quote_negative(client, network):
    options = quote(client, "M")
    # WH-B -> M costs -8.00: the total is clamped, the days and the route are kept.
    assert options["economy"] == {"cost": "0.00", "days": 3, "route": ["WH-B", "M"]}
    assert options["express"] == {"cost": "20.00", "days": 1, "route": ["WH-A", "M"]}


def test_a_warehouse_ships_from_its_own_stock(client, network):
    options = quote(client, "WH-A")
    assert options["economy"] == options["express"] == {"cost": "0.00", "days": 0, "route": ["WH-A"]}


def test_quote_errors(client, network):
    unreachable = assert_problem(client.get(f"{QUOTE}?to=X"), 422)
    assert unreachable["errors"] == {"to": ["No warehouse ships to this zone."]}
    assert assert_problem(client.get(f"{QUOTE}?to=NOPE"), 404)["detail"] == "No such shipping zone."
    assert "to" in assert_problem(client.get(QUOTE), 422)["errors"]
    assert "to" in assert_problem(client.get(f"{QUOTE}?to=lower"), 422)["errors"]


def test_no_warehouse_at_all_is_unreachable(client, admin_headers):
    add_zone(client, admin_headers, "A")
    add_zone(client, admin_headers, "B")
    add_leg(client, admin_headers, "A", "B", "1.00", 1)
    unreachable = assert_problem(client.get(f"{QUOTE}?to=B"), 422)
    assert unreachable["errors"] == {"to": ["No warehouse ships to this zone."]}


def test_a_negative_cycle_is_refused_and_changes_nothing(client, admin_headers, network):
    legs_before = client.get(f"{LEGS}?page_size=100", headers=admin_headers).get_json()
    quotes_before = quote(client, "D")

    body = {"from_zone": "M", "to_zone": "WH-B", "cost": "7.00", "days": 1}
    refused = assert_problem(client.post(LEGS, json=body, headers=admin_headers), 409)
    assert "M -> WH-B" in refused["detail"]  # the lane
    assert "M -> WH-B -> M" in refused["detail"] and "-1.00" in refused["detail"]  # the cycle, its cost
    assert "negative cycle" in refused["detail"]

    assert client.get(f"{LEGS}?page_size=100", headers=admin_headers).get_json() == legs_before
    assert quote(client, "D") == quotes_before
    # At 8.00 the cycle costs nothing: allowed.
    add_leg(client, admin_headers, "M", "WH-B", "8.00", 1)


def test_a_quote_follows_every_write_at_once(client, admin_headers, network):
    assert quote(client, "D")["economy"]["cost"] == "2.00"  # now cached

    cheaper = add_leg(client, admin_headers, "WH-A", "D", "1.00", 9)
    assert quote(client, "D")["economy"] == {"cost": "1.00", "days": 9, "route": ["WH-A", "D"]}
    faster = add_leg(client, admin_headers, "WH-A", "D", "50.00", 1)
    assert quote(client, "D")["express"] == {"cost": "50.00", "days": 1, "route": ["WH-A", "D"]}

    for leg in (cheaper, faster):
        assert client.delete(f"{LEGS}{leg['id']}/", headers=admin_headers).status_code == 204
    assert quote(client, "D") == {
        "economy": {"cost": "2.00", "days": 5, "route": ["WH-B", "M", "D"]},
        "express": {"cost": "30.00", "days": 2, "route": ["WH-B", "D"]},
    }

    add_leg(client, admin_headers, "WH-A", "X", "3.00", 1)  # X becomes reachable
    assert quote(client, "X")["economy"] == {"cost": "3.00", "days": 1, "route": ["WH-A", "X"]}
    add_zone(client, admin_headers, "NEW")
    assert_problem(client.get(f"{QUOTE}?to=NEW"), 422)  # a new zone is known to quotes at once
    assert client.delete(f"{ZONES}NEW/", headers=admin_headers).status_code == 204
    assert_problem(client.get(f"{QUOTE}?to=NEW"), 404)


def test_checkout_choice(client, network, app):
    from ecommerce.errors import ValidationFailed
    from ecommerce.shipping.services import choose_shipping

    with app.test_request_context():
        chosen = choose_shipping("M", "economy")
        assert {**chosen, "cost": str(chosen["cost"])} == {
            "method": "economy",
            "cost": "0.00",
            "days": 3,
            "route": ["WH-B", "M"],
        }
        assert choose_shipping("D", "express")["cost"].as_tuple().exponent == -2
        for code, message in (("X", "No warehouse ships to this zone."), ("NOPE", "No such shipping zone.")):
            with pytest.raises(ValidationFailed) as raised:
                choose_shipping(code, "economy")
            assert raised.value.extra["errors"] == {"shipping": {"to": [message]}}
