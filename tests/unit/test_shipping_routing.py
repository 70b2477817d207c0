"""The routing of ecommerce/shipping/routing.py against a brute force over every simple path, on
random small networks with rebates (negative legs), parallel legs and ties, but never a cycle of
negative total cost: each network is grown one proposed leg at a time, and a leg is kept only
when the brute force finds that it closes no negative cycle, which ``closed_cycle`` must agree
with on every proposal."""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Iterator

import pytest

from ecommerce.shipping.routing import Leg, Zone, closed_cycle, quote_table

NETWORKS = 300


def simple_paths(legs: list[Leg], start: str) -> Iterator[tuple[list[str], int, int]]:
    """Every simple path from ``start`` as (route, cents, days), once per choice of leg on each of
    its lanes (parallel legs included); the empty path first."""
    by_origin: dict[str, list[Leg]] = defaultdict(list)
    for leg in legs:
        by_origin[leg.from_zone].append(leg)
    stack = [([start], 0, 0)]
    while stack:
        route, cents, days = stack.pop()
        yield route, cents, days
        for leg in by_origin[route[-1]]:
            if leg.to_zone not in route:
                stack.append(([*route, leg.to_zone], cents + leg.cents, days + leg.days))


def brute_force_cycle_cents(legs: list[Leg], new: Leg) -> int | None:
    """The cheapest cycle through ``new`` (its cost), or None when it closes no cycle at all."""
    returns = [cents for route, cents, _ in simple_paths(legs, new.to_zone) if route[-1] == new.from_zone]
    return min(returns) + new.cents if returns else None


def grow_network(rng: random.Random) -> tuple[list[Zone], list[Leg]]:
    codes = [f"Z{index}" for index in range(rng.randint(2, 7))]
    warehouses = set(rng.sample(codes, rng.choice([0, 1, 1, 2, 2, 3]) if len(codes) > 2 else 1))
    zones = [Zone(code, code in warehouses) for code in codes]
    legs: list[Leg] = []
    for _ in range(rng.randint(0, 3 * len(codes))):
        from_zone, to_zone = rng.sample(codes, 2)
        # Small ranges, so that equal costs and equal days (ties) are common.
        new = Leg(from_zone, to_zone, rng.randint(-6, 12) * 50, rng.randint(1, 4))
        expected = brute_force_cycle_cents(legs, new)
        cycle = closed_cycle(codes, legs, new)
        if expected is not None and expected < 0:
            assert cycle is not None, (legs, new)
            assert cycle.cents == expected
            assert cycle.route[:2] == [from_zone, to_zone] and cycle.route[-1] == from_zone
            assert len(set(cycle.route)) == len(cycle.route) - 1  # a simple cycle
            continue
        assert cycle is None, (legs, new, cycle)
        legs.append(new)
    return zones, legs


def best_legs_total(legs: list[Leg], route: list[str], key) -> tuple[int, int]:
    """The cents and days of ``route`` with the best leg of each lane by ``key``."""
    chosen = [
        min((leg for leg in legs if (leg.from_zone, leg.to_zone) == lane), key=key)
        for lane in zip(route, route[1:], strict=False)
    ]
    return sum(leg.cents for leg in chosen), sum(leg.days for leg in chosen)


def by_cost(leg: Leg) -> tuple[int, int]:
    return leg.cents, leg.days


def by_days(leg: Leg) -> tuple[int, int]:
    return leg.days, leg.cents


@pytest.mark.parametrize("seed", range(NETWORKS))
def test_quote_table_is_the_best_simple_path_from_any_warehouse(seed):
    rng = random.Random(seed)
    zones, legs = grow_network(rng)
    warehouses = {zone.code for zone in zones if zone.is_warehouse}
    table = quote_table(zones, legs)

    arrivals: dict[str, list[tuple[int, int]]] = defaultdict(list)  # zone -> (cents, days) of paths
    for warehouse in warehouses:
        for route, cents, days in simple_paths(legs, warehouse):
            if len(route) > 1:
                arrivals[route[-1]].append((cents, days))

    assert set(table) == warehouses | set(arrivals)  # an unreachable zone is absent
    for code, options in table.items():
        economy, express = options["economy"], options["express"]
        if code in warehouses:
            assert economy == express == {"cents": 0, "days": 0, "route": [code]}
            continue
        assert (economy["cents"], economy["days"]) == min(arrivals[code])
        assert (express["days"], express["cents"]) == min((days, cents) for cents, days in arrivals[code])
        for option, key in ((economy, by_cost), (express, by_days)):
            route = option["route"]
            assert route[0] in warehouses and route[-1] == code
            assert len(set(route)) == len(route)
            assert best_legs_total(legs, route, key) == (option["cents"], option["days"])


def test_parallel_legs_each_method_takes_its_own_carrier():
    zones = [Zone("WH", True), Zone("D", False)]
    legs = [
        Leg("WH", "D", 500, 6),  # cheap and slow
        Leg("WH", "D", 2500, 1),  # fast and dear
        Leg("WH", "D", 500, 4),  # as cheap, faster: wins the economy tie
        Leg("WH", "D", 2000, 1),  # as fast, cheaper: wins the express tie
    ]
    table = quote_table(zones, legs)
    assert table["D"]["economy"] == {"cents": 500, "days": 4, "route": ["WH", "D"]}
    assert table["D"]["express"] == {"cents": 2000, "days": 1, "route": ["WH", "D"]}


def test_the_weights_stay_exact_at_the_largest_amounts():
    # Costs at the API's bounds: a lexicographic weight that lost precision would pick the
    # 1-cent-dearer route, or confuse a day with a cent.
    zones = [Zone("WH", True), Zone("A", False), Zone("B", False), Zone("D", False)]
    legs = [
        Leg("WH", "A", 100_000_000, 365),
        Leg("A", "D", -100_000_000, 365),
        Leg("WH", "B", 99_999_999, 365),
        Leg("B", "D", -99_999_999, 364),
        Leg("WH", "D", 1, 1),
    ]
    table = quote_table(zones, legs)
    assert table["D"]["economy"] == {"cents": 0, "days": 729, "route": ["WH", "B", "D"]}
    assert table["D"]["express"] == {"cents": 1, "days": 1, "route": ["WH", "D"]}


def test_no_warehouse_no_quotes_and_unreachable_zones_are_absent():
    legs = [Leg("A", "B", 100, 1)]
    assert quote_table([Zone("A", False), Zone("B", False)], legs) == {}
    table = quote_table([Zone("A", False), Zone("B", True), Zone("C", False)], legs)
    assert set(table) == {"B"}


def test_a_zero_cost_cycle_is_allowed_and_harmless():
    legs = [Leg("WH", "A", -300, 1)]
    assert closed_cycle(["WH", "A"], legs, Leg("A", "WH", 300, 1)) is None
    legs.append(Leg("A", "WH", 300, 1))
    table = quote_table([Zone("WH", True), Zone("A", False)], legs)
    assert table["A"]["economy"] == {"cents": -300, "days": 1, "route": ["WH", "A"]}


def test_the_cycle_named_is_the_cheapest_one_through_the_new_leg():
    legs = [Leg("B", "C", -100, 1), Leg("C", "A", 50, 1), Leg("B", "A", 10, 1)]
    cycle = closed_cycle(["A", "B", "C"], legs, Leg("A", "B", 40, 2))
    assert cycle is not None
    assert cycle.route == ["A", "B", "C", "A"] and cycle.cents == -10
    assert closed_cycle(["A", "B", "C"], legs, Leg("A", "B", 50, 2)) is None
    assert closed_cycle(["A", "B", "C", "D"], legs, Leg("A", "D", -500, 1)) is None  # no way back
