"""The carrier network and its quotes.

Every quote is a look-up in one table of the whole network (every zone a warehouse reaches, with
its economy and express options), computed by ecommerce/shipping/routing.py on a cache miss,
once per version of the network, and cached. Every write to a zone or a leg purges the table
after its commit (``invalidate_shipping_network``), so the next quote, on any instance, is made
from the new network.

Writers of legs take ``LOCK TABLE shipping_legs IN SHARE ROW EXCLUSIVE MODE`` on PostgreSQL
before they read the network: two admins adding legs at once are served one after the other, so
two legs that are harmless alone cannot together close a cycle of negative cost. The mode
conflicts with itself and with every write, not with reads: quotes and lists go on meanwhile.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

from flask import current_app
from sqlalchemy import exists, func, or_, select, text
from sqlalchemy.orm import aliased

from ecommerce.core.cache.purge import invalidate_shipping_network
from ecommerce.core.cache.store import SHIPPING_NETWORK_KEY, get_or_compute
from ecommerce.core.db.session import conflict_on_duplicate
from ecommerce.errors import Conflict, NotFound, ValidationFailed
from ecommerce.extensions import db
from ecommerce.shipping import routing
from ecommerce.shipping.models import ZONE_CODE_PATTERN, ShippingLeg, ShippingZone

NO_SUCH_ZONE = "No such shipping zone."
UNREACHABLE = "No warehouse ships to this zone."
CODE_TAKEN = "A shipping zone with that code already exists."
TWO_PLACES = Decimal("0.01")

_FROM, _TO = aliased(ShippingZone), aliased(ShippingZone)
# A leg as the API shows it: by zone codes.
_LEGS = (
    select(
        ShippingLeg.id,
        _FROM.code.label("from_zone"),
        _TO.code.label("to_zone"),
        ShippingLeg.cost,
        ShippingLeg.days,
    )
    .join(_FROM, ShippingLeg.from_zone_id == _FROM.id)
    .join(_TO, ShippingLeg.to_zone_id == _TO.id)
)


def cents(amount: Decimal) -> int:
    """An amount of money (two places) in integer cents, exactly."""
    return int(amount.scaleb(2).to_integral_exact())


def money(amount_cents: int) -> Decimal:
    return Decimal(amount_cents).scaleb(-2).quantize(TWO_PLACES)


# -- zones ---------------------------------------------------------------------------------------


def list_zones(page: int, page_size: int) -> tuple[list[ShippingZone], int]:
    total = db.session.scalar(select(func.count()).select_from(ShippingZone))
    zones = db.session.scalars(
        select(ShippingZone).order_by(ShippingZone.code).limit(page_size).offset((page - 1) * page_size)
    )
    return list(zones), total


def get_zone(code: str) -> ShippingZone:
    if not re.match(ZONE_CODE_PATTERN, code):  # never a zone's (and a NUL never reaches the driver)
        raise NotFound(NO_SUCH_ZONE)
    zone = db.session.scalar(select(ShippingZone).where(ShippingZone.code == code))
    if zone is None:
        raise NotFound(NO_SUCH_ZONE)
    return zone


def create_zone(data: dict[str, Any]) -> ShippingZone:
    zone = ShippingZone(**data)
    db.session.add(zone)
    invalidate_shipping_network(db.session)  # a new warehouse, or a zone now known to quotes
    with conflict_on_duplicate(CODE_TAKEN):
        db.session.commit()
    return zone


def delete_zone(code: str) -> None:
    """Remove a zone that no leg uses."""
    _lock_network()  # no leg to or from it can be added between the check and the delete
    zone = get_zone(code)
    in_use = select(ShippingLeg.id).where(
        or_(ShippingLeg.from_zone_id == zone.id, ShippingLeg.to_zone_id == zone.id)
    )
    if db.session.scalar(select(exists(in_use))):
        raise Conflict(f"The zone {code} is still used by a leg; delete its legs first.")
    db.session.delete(zone)
    invalidate_shipping_network(db.session)
    db.session.commit()


# -- legs ----------------------------------------------------------------------------------------


def _lock_network() -> None:
    """Serialise the writers of the network until the commit; readers go on."""
    if db.session.get_bind().dialect.name == "postgresql":
        db.session.execute(text("LOCK TABLE shipping_legs IN SHARE ROW EXCLUSIVE MODE"))
    # SQLite (the development default) has no table locks; it lets one writer commit at a time.


def list_legs(page: int, page_size: int) -> tuple[list[Any], int]:
    total = db.session.scalar(select(func.count()).select_from(ShippingLeg))
    rows = db.session.execute(_LEGS.order_by(ShippingLeg.id).limit(page_size).offset((page - 1) * page_size))
    return list(rows), total


def _zone_ids(data: dict[str, Any]) -> tuple[int, int]:
    codes = {data["from_zone"], data["to_zone"]}
    found = db.session.execute(select(ShippingZone.code, ShippingZone.id).where(ShippingZone.code.in_(codes)))
    ids = {code: zone_id for code, zone_id in found}
    errors = {field: [NO_SUCH_ZONE] for field in ("from_zone", "to_zone") if data[field] not in ids}
    if errors:
        raise ValidationFailed(errors)
    if data["from_zone"] == data["to_zone"]:
        raise ValidationFailed({"to_zone": ["Must differ from from_zone."]})
    return ids[data["from_zone"]], ids[data["to_zone"]]


def _network() -> tuple[list[routing.Zone], list[routing.Leg]]:
    """The whole network as plain data, from the primary: the quote table is cached until the
    next write, so it must never be made from a replica that has not replayed that write yet."""
    zones = [
        routing.Zone(code, is_warehouse)
        for code, is_warehouse in db.session.execute(select(ShippingZone.code, ShippingZone.is_warehouse))
    ]
    legs = [
        routing.Leg(row.from_zone, row.to_zone, cents(row.cost), row.days)
        for row in db.session.execute(_LEGS.order_by(ShippingLeg.id))
    ]
    return zones, legs


def create_leg(data: dict[str, Any]) -> dict[str, Any]:
    """Add a carrier leg ``{from_zone, to_zone, cost, days}`` (zone codes); 409 if it would close
    a cycle of negative total cost."""
    _lock_network()
    from_id, to_id = _zone_ids(data)
    new = routing.Leg(data["from_zone"], data["to_zone"], cents(data["cost"]), data["days"])
    zones, legs = _network()
    cycle = routing.closed_cycle((zone.code for zone in zones), legs, new)
    if cycle is not None:
        raise Conflict(
            f"A leg {new.from_zone} -> {new.to_zone} costing {money(new.cents)} would close the cycle "
            f"{' -> '.join(cycle.route)} of total cost {money(cycle.cents)}: around a negative cycle "
            "a route gets cheaper on every turn, so no cheapest route would exist."
        )
    leg = ShippingLeg(from_zone_id=from_id, to_zone_id=to_id, cost=money(new.cents), days=new.days)
    db.session.add(leg)
    db.session.flush()
    invalidate_shipping_network(db.session)
    db.session.commit()
    return {
        "id": leg.id,
        "from_zone": new.from_zone,
        "to_zone": new.to_zone,
        "cost": money(new.cents),
        "days": new.days,
    }


def delete_leg(leg_id: int) -> None:
    leg = db.session.get(ShippingLeg, leg_id)
    if leg is None:
        raise NotFound("No such shipping leg.")
    db.session.delete(leg)
    invalidate_shipping_network(db.session)
    db.session.commit()


# -- quotes --------------------------------------------------------------------------------------


# The cached table: for every zone, None (no warehouse reaches it) or one (cents, days, route)
# per method, in METHODS order, the route's codes joined by spaces (a code has none). Flat tuples
# and strings rather than dicts and lists: a Redis hit unpickles the whole table, and with
# thousands of small containers in it the garbage collector's passes cost more than the rest of
# the read. Costs become Decimals only for the one quote asked for.
CachedOption = tuple[int, int, str]
QuoteTable = dict[str, tuple[CachedOption, ...] | None]


def _flat(options: dict[str, routing.Option] | None) -> tuple[CachedOption, ...] | None:
    if options is None:
        return None
    return tuple(
        (options[method]["cents"], options[method]["days"], " ".join(options[method]["route"]))
        for method in routing.METHODS
    )


def _compute_quotes() -> QuoteTable:
    zones, legs = _network()
    table = routing.quote_table(zones, legs)
    return {zone.code: _flat(table.get(zone.code)) for zone in zones}


def _quotes() -> QuoteTable:
    return get_or_compute(
        SHIPPING_NETWORK_KEY,
        _compute_quotes,
        current_app.config["SHIPPING_QUOTE_CACHE_TIMEOUT"],
        entity="shipping_quotes",
        guard_writes=True,
    )


def quote(to_code: str) -> dict[str, Any]:
    """``{to, options: [economy, express]}``, each option ``{method, cost, days, route}``.

    Raises NotFound for an unknown zone, ValidationFailed (``to``) for one no warehouse reaches."""
    quotes = _quotes()
    if to_code not in quotes:
        raise NotFound(NO_SUCH_ZONE)
    options = quotes[to_code]
    if options is None:
        raise ValidationFailed({"to": [UNREACHABLE]})
    return {
        "to": to_code,
        "options": [
            # A rebate lowers a quote, down to nothing: the total is clamped, days and route kept.
            {"method": method, "cost": money(max(cents, 0)), "days": days, "route": route.split(" ")}
            for method, (cents, days, route) in zip(routing.METHODS, options, strict=True)
        ],
    }


def choose_shipping(to_code: str, method: str) -> dict[str, Any]:
    """The option of ``method`` for an order shipped to ``to_code``: ``{method, cost, days,
    route}``, the cost a Decimal of two places, never below zero.

    Raises ValidationFailed under ``shipping`` (a 422 of the checkout's body) for an unknown or
    unreachable zone, or an unknown method."""
    try:
        options = quote(to_code)["options"]
    except NotFound as error:
        raise ValidationFailed({"shipping": {"to": [error.detail]}}) from None
    except ValidationFailed as error:
        raise ValidationFailed({"shipping": error.extra["errors"]}) from None
    for option in options:
        if option["method"] == method:
            return option
    raise ValidationFailed({"shipping": {"method": [f"Must be one of: {', '.join(routing.METHODS)}."]}})
