"""Routes through the carrier network: the quote table and the negative-cycle check.

Pure functions over plain data (zone codes, legs with costs in integer cents), so that they can be
tested against a brute force and benchmarked without an app or a database.

The network is a directed graph of zones; a leg is a carrier's offer on one lane (from -> to), and
a lane may have several (a cheap slow carrier and a fast dear one). A cost may be negative, a
carrier's rebate, but the network never holds a cycle of negative total cost (``closed_cycle``
refuses the leg that would make one), so the cheapest route to every zone exists and is a simple
path.

Both methods are one shortest-path pass over the whole network with one integer weight per lane
(its best leg for the method), chosen so that the library's plain shortest path is the
lexicographic optimum:

- economy, least cost then fewest days: ``cents * K_days + days``, with ``K_days`` greater than
  the days of every leg together, so the days of a simple path never carry into its cents. Costs
  may be negative, so it is Bellman-Ford: O(V * E).
- express, fewest days then least cost: ``days * K_cost + cents``, with ``K_cost`` greater than
  twice the absolute cents of every leg together, so a path's cents (between -K_cost/2 and
  K_cost/2) never carry into its days. Every leg has days >= 1, so every weight is positive and
  Dijkstra is exact: O((V + E) log V).

Every cycle weighs more than nothing under both weights (its cost is >= 0 and its days >= 1), so
both passes end on simple paths, the paths the bounds above are about. Python's integers make
the weights exact at any size.

Every warehouse is a source at once, so one pass per method answers every destination, each
route starting at its best warehouse: Bellman-Ford runs from a super-source joined to each
warehouse at weight zero, Dijkstra in its multi-source form (the same thing, inside the library).
"""

from __future__ import annotations

from collections.abc import Iterable
from itertools import pairwise
from typing import NamedTuple, TypedDict

import networkx as nx

METHODS = ("economy", "express")
# The super-source: a node that no zone code can equal (codes are strings).
_WAREHOUSES = ("every warehouse",)


class Zone(NamedTuple):
    code: str
    is_warehouse: bool


class Leg(NamedTuple):
    from_zone: str
    to_zone: str
    cents: int
    days: int


class Option(TypedDict):
    cents: int  # exact, possibly negative: the clamp at zero is the quote's, not the route's
    days: int
    route: list[str]


class Cycle(NamedTuple):
    route: list[str]  # starts and ends at the new leg's from_zone
    cents: int  # the cycle's total cost with the new leg, below zero


def _economy_weight(leg: Leg, k_days: int) -> int:
    return leg.cents * k_days + leg.days


def _express_weight(leg: Leg, k_cost: int) -> int:
    return leg.days * k_cost + leg.cents


def lane_graph(zones: Iterable[str], legs: Iterable[Leg]) -> nx.DiGraph:
    """One edge per lane, holding the lane's best leg for each method (parallel legs compete
    here, once, rather than inside every pass) under the method's name, with its integer weight
    under ``<method>_weight``; and the lane's least cost under ``cents``."""
    legs = list(legs)
    k_days = sum(leg.days for leg in legs) + 1
    k_cost = 2 * sum(abs(leg.cents) for leg in legs) + 1
    graph = nx.DiGraph()
    graph.add_nodes_from(zones)
    for leg in legs:
        economy, express = _economy_weight(leg, k_days), _express_weight(leg, k_cost)
        lane = graph.get_edge_data(leg.from_zone, leg.to_zone)
        if lane is None:
            graph.add_edge(
                leg.from_zone,
                leg.to_zone,
                economy=leg,
                economy_weight=economy,
                express=leg,
                express_weight=express,
                cents=leg.cents,
            )
            continue
        if economy < lane["economy_weight"]:
            lane.update(economy=leg, economy_weight=economy, cents=leg.cents)
        if express < lane["express_weight"]:
            lane.update(express=leg, express_weight=express)
    return graph


def _option(graph: nx.DiGraph, route: list[str], method: str) -> Option:
    """The cost and days of ``route``, summed over the legs the method takes on its lanes (exact
    integers, not decoded from the weights)."""
    legs = [graph.edges[a, b][method] for a, b in pairwise(route)]
    return Option(cents=sum(leg.cents for leg in legs), days=sum(leg.days for leg in legs), route=route)


def quote_table(zones: Iterable[Zone], legs: Iterable[Leg]) -> dict[str, dict[str, Option]]:
    """For every zone a warehouse reaches: its economy and express options. A zone no warehouse
    reaches is absent; a warehouse is its own route, at no cost, in no days.

    Two passes in all, whatever the number of warehouses and destinations: Bellman-Ford from the
    super-source for economy, multi-source Dijkstra for express."""
    zones = list(zones)
    warehouses = [zone.code for zone in zones if zone.is_warehouse]
    if not warehouses:
        return {}
    graph = lane_graph((zone.code for zone in zones), legs)

    graph.add_edges_from(((_WAREHOUSES, code) for code in warehouses), economy_weight=0)
    _, economy_paths = nx.single_source_bellman_ford(graph, _WAREHOUSES, weight="economy_weight")
    graph.remove_node(_WAREHOUSES)
    _, express_paths = nx.multi_source_dijkstra(graph, warehouses, weight="express_weight")

    table: dict[str, dict[str, Option]] = {}
    for code, path in economy_paths.items():
        if code == _WAREHOUSES:
            continue
        table[code] = {
            "economy": _option(graph, path[1:], "economy"),
            "express": _option(graph, express_paths[code], "express"),
        }
    for code in warehouses:
        # A rebate on a leg between warehouses may make another warehouse's route to this one
        # cheaper than nothing; it ships from its own stock all the same.
        table[code] = {method: Option(cents=0, days=0, route=[code]) for method in METHODS}
    return table


def closed_cycle(zones: Iterable[str], legs: Iterable[Leg], new: Leg) -> Cycle | None:
    """The cycle of negative total cost that adding ``new`` to the network would close, or None.

    The network holds no negative cycle, so any the new leg u -> v closes runs through it: it
    closes one exactly when the cheapest path v -> ... -> u costs less than ``-new.cents``. One
    Bellman-Ford pass from v over the lanes' least costs: O(V * E)."""
    graph = lane_graph(zones, legs)
    if new.from_zone not in graph or new.to_zone not in graph:
        return None
    try:
        cents, path = nx.single_source_bellman_ford(graph, new.to_zone, new.from_zone, weight="cents")
    except nx.NetworkXNoPath:
        return None
    total = cents + new.cents
    return Cycle(route=[new.from_zone, *path], cents=total) if total < 0 else None
