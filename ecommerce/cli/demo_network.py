"""The demo carrier network: two warehouses, a hub and the regions they ship to. Lanes differ so
that economy and express differ: a cheap slow truck through the hub beside a dear fast courier,
and one rebate (a negative leg: a carrier's backhaul into Poland, paid to fill a lorry that
would go home empty) that makes the cheapest route to Poland a detour."""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy import func, select

from ecommerce.extensions import db
from ecommerce.shipping.models import ShippingLeg, ShippingZone
from ecommerce.shipping.services import create_leg, create_zone

ZONES = [
    ("WH-NORTH", "Warehouse North (Hamburg)", True),
    ("WH-SOUTH", "Warehouse South (Munich)", True),
    ("HUB-CENTRAL", "Central hub (Kassel)", False),
    ("DE-NORTH", "Northern Germany", False),
    ("DE-SOUTH", "Southern Germany", False),
    ("DE-EAST", "Eastern Germany", False),
    ("DE-WEST", "Western Germany", False),
    ("AT", "Austria", False),
    ("CH", "Switzerland", False),
    ("NL", "Netherlands", False),
    ("FR", "France", False),
    ("PL", "Poland", False),
]
# (from, to, cost, days)
LEGS = [
    ("WH-NORTH", "DE-NORTH", "3.90", 1),
    ("WH-NORTH", "HUB-CENTRAL", "2.00", 1),
    ("WH-NORTH", "NL", "6.50", 2),
    ("WH-NORTH", "PL", "7.90", 3),
    ("WH-NORTH", "DE-EAST", "6.90", 1),
    ("WH-SOUTH", "DE-SOUTH", "3.90", 1),
    ("WH-SOUTH", "AT", "5.90", 2),
    ("WH-SOUTH", "CH", "8.90", 2),
    ("WH-SOUTH", "HUB-CENTRAL", "2.50", 1),
    ("WH-SOUTH", "FR", "11.90", 1),
    ("HUB-CENTRAL", "DE-NORTH", "1.50", 1),
    ("HUB-CENTRAL", "DE-WEST", "2.90", 1),
    ("HUB-CENTRAL", "DE-EAST", "2.90", 2),
    ("HUB-CENTRAL", "NL", "3.20", 2),
    ("HUB-CENTRAL", "FR", "4.50", 3),
    ("DE-WEST", "FR", "3.00", 2),
    ("DE-EAST", "PL", "-1.00", 2),
    ("PL", "DE-EAST", "2.00", 2),
]


def seed_network() -> tuple[int, int]:
    """Create the zones that are missing, and the legs when there are none yet; the numbers added."""
    have = set(db.session.scalars(select(ShippingZone.code)))
    legs_exist = bool(db.session.scalar(select(func.count()).select_from(ShippingLeg)))
    db.session.commit()
    zones = 0
    for code, name, warehouse in ZONES:
        if code not in have:
            create_zone({"code": code, "name": name, "is_warehouse": warehouse})
            zones += 1
    if legs_exist:
        return zones, 0
    for origin, to, cost, days in LEGS:
        create_leg({"from_zone": origin, "to_zone": to, "cost": Decimal(cost), "days": days})
    return zones, len(LEGS)
