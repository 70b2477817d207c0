"""The storefront in a real headless Chromium (Debian's ``chromium``, driven by Playwright).

The shop runs as it does in production, minus nginx: the real gunicorn (gevent workers) on the
test PostgreSQL and Redis, serving the API and the storefront's files, and the real Huey consumer
with the sandbox gateway and an SMTP server, so a payment is charged by the worker and its
status reaches the page over the order's event stream. The page is found the way a person (or a
screen reader) finds it: by roles and accessible names, which are part of the storefront's
contract.

The shop's data is made as a shop's would be: the catalog and the accounts in the database, then,
through the API as an admin, pictures of some products (real JPEG and PNG files drawn here) and a
shipping network, so the checkout asks where the parcel goes.
"""

from __future__ import annotations

import io
import os
import re
from collections.abc import Iterator
from decimal import Decimal

import pytest
import requests
from PIL import Image, ImageDraw
from sqlalchemy import select

from ecommerce.extensions import db
from ecommerce.orders.models import Order
from ecommerce.users.models import User
from tests.factories import PASSWORD, AdminFactory, CategoryFactory, ProductFactory, UserFactory
from tests.helpers import bearer, truncate_every_table
from tests.integration.servers import Consumer, MailServer, clean_env, free_port, gunicorn

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
LIVE_TIMEOUT_MS = 20_000  # a payment goes through the queue, the worker and the event stream

playwright_api = pytest.importorskip("playwright.sync_api", reason="playwright is in requirements-dev.txt")
expect = playwright_api.expect

if not os.path.exists(CHROMIUM):
    # `make test` installs it (scripts/system_packages.sh); a run without it must say so loudly.
    pytest.fail(f"{CHROMIUM} is missing: run `make test` (it installs Debian's chromium)", pytrace=False)


# -- the shop ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def catalog(app) -> Iterator[dict]:
    """A small catalog and two accounts, committed; every table emptied afterwards."""
    with app.app_context():
        lighting = CategoryFactory(name="Lighting")
        furniture = CategoryFactory(name="Furniture")
        lamp = ProductFactory(
            name="Brass Desk Lamp",
            description="A warm, dimmable lamp.",
            price=Decimal("49.00"),
            stock_quantity=25,
            category_id=lighting.id,
        )
        lantern = ProductFactory(
            name="Paper Lantern", price=Decimal("12.50"), stock_quantity=2, category_id=lighting.id
        )
        shelf = ProductFactory(
            name="Walnut Shelf", price=Decimal("89.90"), stock_quantity=7, category_id=furniture.id
        )
        for n in range(14):
            ProductFactory(name=f"Oak Stool {n:02d}", price=Decimal("30.00") + n, category_id=furniture.id)
        UserFactory(username="ada", email="ada@example.com")
        UserFactory(username="grace", email="grace@example.com")
        UserFactory(username="margaret", email="margaret@example.com")
        UserFactory(username="linus", email="linus@example.com")
        AdminFactory(username="boss")
        db.session.commit()
        ids = {"lamp": lamp.id, "lantern": lantern.id, "shelf": shelf.id}
    try:
        yield ids
    finally:
        with app.app_context():
            truncate_every_table()


@pytest.fixture(scope="module")
def shop(app, catalog, tmp_path_factory) -> Iterator[str]:
    """gunicorn and the Huey consumer on the test database and Redis; the shop's base URL."""
    logs = tmp_path_factory.mktemp("storefront")
    mail = MailServer(free_port())
    mail.start()
    env = clean_env(
        DATABASE_URL=app.config["SQLALCHEMY_DATABASE_URI"],
        REDIS_URL=app.config["REDIS_URL"],
        MAIL_SERVER="127.0.0.1",
        MAIL_PORT=str(mail.port),
        SANDBOX_GATEWAY_PATH=str(logs / "gateway.db"),
        WEB_CONCURRENCY="2",
        EVENTS_HEARTBEAT_SECONDS="2",
        # Every login of these tests comes from 127.0.0.1: the production limit (10 a minute per
        # address) would refuse the later tests' logins. The limit's own tests are elsewhere.
        AUTH_RATE_LIMIT="1000/minute",
        LOG_LEVEL="INFO",
        LOG_JSON="false",
        INSTANCE_PATH=str(logs / "instance"),
    )
    consumer = Consumer(env, logs)
    try:
        consumer.start()
        with gunicorn(env, logs / "gunicorn.log") as server:
            yield server.base_url
    finally:
        consumer.stop()
        mail.stop()


# Zones (code, name, is a warehouse) and carrier legs (from, to, cost, days): Poland is reached
# by a cheap slow truck through the hub (economy: 3.90, 5 days) and a dear fast courier through
# Eastern Germany (express: 5.90, 2 days); no leg reaches Iceland.
ZONES = [
    ("WH-NORTH", "Warehouse North", True),
    ("HUB-CENTRAL", "Central hub", False),
    ("DE-EAST", "Eastern Germany", False),
    ("PL", "Poland", False),
    ("IS", "Iceland", False),
]
LEGS = [
    ("WH-NORTH", "HUB-CENTRAL", "1.50", 2),
    ("HUB-CENTRAL", "PL", "2.40", 3),
    ("WH-NORTH", "DE-EAST", "3.00", 1),
    ("DE-EAST", "PL", "2.90", 1),
]
POLAND_ECONOMY = {"method": "economy", "cost": "3.90", "days": 5, "route": ["WH-NORTH", "HUB-CENTRAL", "PL"]}
POLAND_EXPRESS = {"method": "express", "cost": "5.90", "days": 2, "route": ["WH-NORTH", "DE-EAST", "PL"]}


@pytest.fixture(scope="module")
def network(shop) -> dict:
    """The shipping network above, made through the API as an admin; Poland's quote."""
    return _build_network(shop)


def _build_network(shop: str) -> dict:
    headers = _admin_headers(shop)
    for code, name, warehouse in ZONES:
        answer = requests.post(
            f"{shop}/api/shipping/zones/",
            json={"code": code, "name": name, "is_warehouse": warehouse},
            headers=headers,
            timeout=10,
        )
        assert answer.status_code == 201, answer.text
    for origin, to, cost, days in LEGS:
        answer = requests.post(
            f"{shop}/api/shipping/legs/",
            json={"from_zone": origin, "to_zone": to, "cost": cost, "days": days},
            headers=headers,
            timeout=10,
        )
        assert answer.status_code == 201, answer.text
    quote = requests.get(f"{shop}/api/shipping/quote/?to=PL", timeout=10)
    assert quote.json()["options"] == [POLAND_ECONOMY, POLAND_EXPRESS], quote.text
    assert requests.get(f"{shop}/api/shipping/quote/?to=IS", timeout=10).status_code == 422
    return quote.json()


def _remove_network(shop: str) -> None:
    """Every leg, then every zone, deleted through the API: a shop with no shipping network."""
    headers = _admin_headers(shop)
    legs = requests.get(f"{shop}/api/shipping/legs/?page_size=100", headers=headers, timeout=10).json()
    for leg in legs:
        assert requests.delete(f"{shop}/api/shipping/legs/{leg['id']}/", headers=headers, timeout=10).ok
    for code, _, _ in ZONES:
        assert requests.delete(f"{shop}/api/shipping/zones/{code}/", headers=headers, timeout=10).ok
    assert requests.get(f"{shop}/api/shipping/zones/", timeout=10).json() == []


def _to_checkout(page, username: str, product_id: int) -> None:
    """Log in as ``username``, put one of the product in the cart and open the checkout."""
    page.goto("/#/login")
    _log_in(page, username)
    expect(page.get_by_role("heading", level=1)).to_have_text("All products")
    page.goto(f"/#/product/{product_id}")
    page.get_by_role("button", name="Add to cart").click()
    expect(_cart_link(page)).to_have_accessible_name("Cart (1)")
    page.goto("/#/checkout")
    expect(page.get_by_role("heading", level=1)).to_have_text("Checkout")


def _drawn_picture(size: tuple[int, int], colour: tuple[int, int, int], kind: str) -> bytes:
    """A real picture file: a colour field with a disc in the middle, as a JPEG or a PNG."""
    picture = Image.new("RGB", size, colour)
    width, height = size
    ImageDraw.Draw(picture).ellipse(
        [width // 4, height // 4, width * 3 // 4, height * 3 // 4], fill=tuple(255 - c for c in colour)
    )
    buffer = io.BytesIO()
    picture.save(buffer, kind)
    return buffer.getvalue()


# Three pictures of the lamp (a gallery, each of another shape) and one of the shelf; the lantern
# has none.
PICTURES = {
    "lamp": [
        ((1200, 900), (214, 160, 60), "JPEG"),
        ((900, 900), (60, 140, 150), "PNG"),
        ((800, 1000), (120, 80, 160), "JPEG"),
    ],
    "shelf": [((1000, 750), (150, 100, 70), "PNG")],
}


@pytest.fixture(scope="module")
def pictures(shop, catalog) -> dict[str, list[dict]]:
    """The pictures above, uploaded through the API as an admin; each product's ``images``."""
    headers = _admin_headers(shop)
    for key, specs in PICTURES.items():
        for n, (size, colour, kind) in enumerate(specs):
            suffix = "jpeg" if kind == "JPEG" else "png"
            answer = requests.post(
                f"{shop}/api/products/{catalog[key]}/images/",
                files={
                    "file": (f"{key}-{n}.{suffix}", _drawn_picture(size, colour, kind), f"image/{suffix}")
                },
                headers=headers,
                timeout=30,
            )
            assert answer.status_code == 201, answer.text
    images = {
        key: requests.get(f"{shop}/api/products/{catalog[key]}/", timeout=10).json().get("images", [])
        for key in ("lamp", "shelf", "lantern")
    }
    assert [len(images[key]) for key in ("lamp", "shelf", "lantern")] == [3, 1, 0], images
    return images


@pytest.fixture(scope="module")
def browser() -> Iterator:
    with playwright_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser, shop, network, pictures):
    """A fresh browser context (nothing remembered between tests); page errors fail the test.
    Every test sees the same shop: its pictures and its shipping network are made first."""
    context = browser.new_context(base_url=shop, viewport={"width": 1280, "height": 900})
    context.set_default_timeout(10_000)
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(f"uncaught: {error}"))
    page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
    yield page
    context.close()
    # A refused request logs "Failed to load resource" by itself: that is the API answering an
    # error the page then shows, not a fault of the page's script.
    assert [p for p in problems if "Failed to load resource" not in p] == []


def _admin_headers(shop: str) -> dict[str, str]:
    answer = requests.post(
        f"{shop}/api/auth/login/", json={"username": "boss", "password": PASSWORD}, timeout=10
    )
    assert answer.status_code == 200, answer.text
    return bearer(answer.json()["access_token"])


def _set_stock(shop: str, product_id: int, quantity: int) -> None:
    answer = requests.patch(
        f"{shop}/api/products/{product_id}/",
        json={"stock_quantity": quantity},
        headers=_admin_headers(shop),
        timeout=10,
    )
    assert answer.status_code == 200, answer.text


def _mark_document(page) -> None:
    """A flag in this document: still there later means the page was never reloaded."""
    page.evaluate("window.__sameDocument = true")


def _same_document(page) -> bool:
    return page.evaluate("window.__sameDocument === true")


def _log_in(page, username: str, password: str = PASSWORD) -> None:
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()


def _cart_link(page):
    return page.get_by_role("link", name=re.compile(r"^Cart"))


def _log_in_as(shop: str, username: str) -> dict[str, str]:
    answer = requests.post(
        f"{shop}/api/auth/login/", json={"username": username, "password": PASSWORD}, timeout=10
    )
    assert answer.status_code == 200, answer.text
    return bearer(answer.json()["access_token"])


def _loaded(image) -> tuple[int, int]:
    """Wait until the picture has loaded; its natural size (0 x 0 if it could not be decoded)."""
    image.element_handle().wait_for_element_state("visible")
    image.page.wait_for_function("img => img.complete", arg=image.element_handle())
    return tuple(image.evaluate("img => [img.naturalWidth, img.naturalHeight]"))


# -- the shopper's path -----------------------------------------------------------------------


def test_a_shopper_searches_buys_logs_in_at_checkout_pays_and_sees_paid_live(app, page, catalog):
    page.goto("/")
    page.get_by_role("searchbox").fill("brass lamp")
    page.get_by_role("searchbox").press("Enter")
    expect(page.get_by_role("heading", level=1)).to_have_text("Results for “brass lamp”")
    # The search found the lamp and nothing else.
    expect(page.locator(".card-title a")).to_have_count(1)
    page.get_by_role("link", name="Brass Desk Lamp").click()

    expect(page.get_by_role("heading", level=1)).to_have_text("Brass Desk Lamp")
    expect(page.get_by_text("25 in stock")).to_be_visible()
    page.get_by_label("Quantity").fill("2")
    page.get_by_role("button", name="Add to cart").click()
    expect(_cart_link(page)).to_have_accessible_name("Cart (2)")

    _cart_link(page).click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Cart")
    expect(page.locator("[data-total]")).to_have_text("$98.00")
    page.get_by_role("button", name="Checkout").click()

    # Logged out: the checkout asks for a login, then goes on with the same cart.
    expect(page.get_by_role("heading", level=1)).to_have_text("Log in")
    _log_in(page, "ada")
    expect(page.get_by_role("heading", level=1)).to_have_text("Checkout")
    expect(page.get_by_role("button", name="Log out")).to_be_visible()
    expect(page.get_by_text("2 × $49.00")).to_be_visible()
    # The shop ships: nothing can be ordered before the destination is chosen; then economy is.
    expect(page.get_by_role("button", name="Place order")).to_be_disabled()
    page.get_by_label("Ship to").select_option(label="Poland")
    expect(page.get_by_role("radio", name="Economy: $3.90, 5 days")).to_be_checked()
    expect(page.locator("[data-total]")).to_have_text("$101.90")

    # The first checkout reaches the server, which takes the order, but its answer is lost on
    # the way back. The page says so; pressing again (twice, even) sends the same
    # Idempotency-Key, and the server answers with the order it made: one order, not two.
    lost: list[str] = []

    def lose_the_first_answer(route) -> None:
        if lost or route.request.method != "POST":
            route.continue_()
            return
        lost.append(route.request.headers["idempotency-key"])
        route.fetch()  # the server takes the order ...
        route.abort("connectionreset")  # ... and the browser never hears of it

    page.route("**/api/orders/", lose_the_first_answer)
    page.get_by_role("button", name="Place order").click()
    expect(page.get_by_role("alert")).to_contain_text("Could not reach the shop")
    expect(page.get_by_role("heading", level=1)).to_have_text("Checkout")
    with page.expect_response(
        lambda r: r.url.endswith("/api/orders/") and r.request.method == "POST"
    ) as retry:
        page.get_by_role("button", name="Place order").dblclick()
    assert retry.value.request.headers["idempotency-key"] == lost[0]
    assert retry.value.request.post_data_json == {"shipping": {"to": "PL", "method": "economy"}}
    assert retry.value.status == 201 and retry.value.headers.get("idempotent-replayed") == "true"
    page.unroute("**/api/orders/")
    expect(page.get_by_role("heading", level=1)).to_have_text(re.compile(r"^Order #\d+$"))
    order_id = int(page.get_by_role("heading", level=1).inner_text().split("#")[1])
    status = page.get_by_role("status")
    expect(status).to_contain_text("pending")
    expect(page.get_by_label("Payment token")).to_have_value("tok_visa")

    _mark_document(page)
    page.get_by_role("button", name="Pay").click()
    # The worker charges the sandbox card; the order's stream brings "paid" to this very page.
    expect(status).to_contain_text("paid", timeout=LIVE_TIMEOUT_MS)
    expect(status).to_contain_text("Payment received")
    assert _same_document(page), "the page was reloaded"
    expect(page.get_by_role("button", name="Pay")).to_have_count(0)
    expect(_cart_link(page)).to_have_accessible_name("Cart (0)")
    page.set_viewport_size({"width": 390, "height": 844})  # on a phone the total still shows
    expect(page.locator(".items tfoot td").last).to_be_visible()
    expect(page.locator(".items tfoot td").last).to_have_text("$101.90")
    page.set_viewport_size({"width": 1280, "height": 900})

    with app.app_context():
        orders = db.session.scalars(
            select(Order).join(User, Order.user_id == User.id).where(User.username == "ada")
        ).all()
        assert [o.id for o in orders] == [order_id]
        assert orders[0].total_amount == Decimal("101.90")  # the lamps and economy to Poland
        assert orders[0].shipping_method == "economy"

    page.get_by_role("link", name="Orders").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Your orders")
    expect(page.get_by_role("link", name=f"Order #{order_id}")).to_be_visible()


def test_stock_moves_live_on_the_product_page(page, shop, catalog):
    page.goto(f"/#/product/{catalog['shelf']}")
    expect(page.get_by_role("heading", level=1)).to_have_text("Walnut Shelf")
    expect(page.get_by_text("7 in stock")).to_be_visible()
    expect(page.locator(".live.on")).to_be_visible()
    _mark_document(page)

    _set_stock(shop, catalog["shelf"], 3)
    expect(page.get_by_text("Only 3 left")).to_be_visible()
    _set_stock(shop, catalog["shelf"], 0)
    expect(page.get_by_text("Out of stock")).to_be_visible()
    expect(page.get_by_role("button", name="Add to cart")).to_be_disabled()
    assert _same_document(page)
    _set_stock(shop, catalog["shelf"], 7)


def _place_order_of_the_cart(page) -> int:
    page.goto("/#/checkout")
    page.get_by_label("Ship to").select_option(label="Eastern Germany")
    page.get_by_role("button", name="Place order").click()
    expect(page.get_by_role("heading", level=1)).to_have_text(re.compile(r"^Order #\d+$"))
    return int(page.get_by_role("heading", level=1).inner_text().split("#")[1])


def test_cancelling_an_order_here_or_elsewhere(page, shop, catalog):
    page.goto(f"/#/product/{catalog['shelf']}")
    page.get_by_role("button", name="Add to cart").click()
    expect(_cart_link(page)).to_have_accessible_name("Cart (1)")
    page.get_by_role("link", name="Log in").first.click()
    _log_in(page, "grace")
    expect(page.get_by_role("heading", level=1)).to_have_text("Walnut Shelf")  # back where it was
    expect(_cart_link(page)).to_have_accessible_name("Cart (1)")  # the guest cart came along

    # Cancelled on this page: asked on the page, then the status says so and the actions go.
    _place_order_of_the_cart(page)
    status = page.get_by_role("status")
    expect(status).to_contain_text("pending")
    page.get_by_role("button", name="Cancel order").click()
    page.get_by_role("button", name="Yes, cancel the order").click()
    expect(status).to_contain_text("cancelled")
    expect(status).to_be_focused()  # the pressed button is gone; focus is not lost
    expect(page.get_by_role("button", name="Pay")).to_have_count(0)
    expect(page.get_by_role("button", name="Cancel order")).to_have_count(0)

    # Cancelled elsewhere (another tab, the support desk): the open page follows by itself.
    page.goto(f"/#/product/{catalog['shelf']}")
    page.get_by_role("button", name="Add to cart").click()
    expect(_cart_link(page)).to_have_accessible_name("Cart (1)")
    order_id = _place_order_of_the_cart(page)
    expect(status).to_contain_text("pending")
    expect(page.locator(".live.on")).to_be_visible()
    _mark_document(page)
    cancelled = requests.post(
        f"{shop}/api/orders/{order_id}/cancel/", headers=_admin_headers(shop), timeout=10
    )
    assert cancelled.status_code == 200, cancelled.text
    expect(status).to_contain_text("cancelled")
    expect(page.get_by_role("button", name="Pay")).to_have_count(0)
    assert _same_document(page)


# -- pictures ---------------------------------------------------------------------------------


def test_cards_show_thumbnails_and_the_product_page_a_gallery(page, catalog, pictures):
    page.goto("/")
    page.get_by_role("link", name="Lighting").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Lighting")
    lamp_card = page.get_by_role("article").filter(has=page.get_by_role("link", name="Brass Desk Lamp"))
    lantern_card = page.get_by_role("article").filter(has=page.get_by_role("link", name="Paper Lantern"))

    # The card shows the main picture's thumbnail, sized before it loads, loaded lazily.
    main = pictures["lamp"][0]
    thumbnail = lamp_card.get_by_role("img", name="Brass Desk Lamp")
    expect(thumbnail).to_have_attribute("src", main["thumbnail_url"])
    expect(thumbnail).to_have_attribute("width", str(main["thumbnail_width"]))
    expect(thumbnail).to_have_attribute("height", str(main["thumbnail_height"]))
    expect(thumbnail).to_have_attribute("loading", "lazy")
    expect(thumbnail).to_have_attribute("decoding", "async")
    assert _loaded(thumbnail) == (
        main["thumbnail_width"],
        main["thumbnail_height"],
    )  # the thumbnail, not the picture
    # A product without pictures: a block of the same size, and no picture asked for.
    expect(lantern_card.get_by_role("img")).to_have_count(0)
    lamp_box = lamp_card.locator(".thumb").bounding_box()
    lantern_box = lantern_card.locator(".thumb").bounding_box()
    assert lamp_box["height"] > 100 and lantern_box["height"] > 100
    assert (round(lamp_box["width"]), round(lamp_box["height"])) == (
        round(lantern_box["width"]),
        round(lantern_box["height"]),
    )

    # The product page: the main picture large, and a button per picture to show it instead.
    lamp_card.get_by_role("link", name="Brass Desk Lamp").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Brass Desk Lamp")
    buttons = page.get_by_role("button", name=re.compile(r"^Picture \d of 3$"))
    expect(buttons).to_have_count(3)

    def shows(n: int) -> None:
        image = pictures["lamp"][n - 1]
        name = "Brass Desk Lamp" if n == 1 else f"Brass Desk Lamp, picture {n} of 3"
        large = page.get_by_role("img", name=name, exact=True)
        expect(large).to_have_attribute("src", image["url"])
        expect(large).to_have_attribute("width", str(image["width"]))
        expect(large).to_have_attribute("height", str(image["height"]))
        assert _loaded(large) == (image["width"], image["height"])
        for other in range(1, 4):
            pressed = "true" if other == n else "false"
            expect(page.get_by_role("button", name=f"Picture {other} of 3")).to_have_attribute(
                "aria-pressed", pressed
            )

    shows(1)
    page.get_by_role("button", name="Picture 2 of 3").click()
    shows(2)
    # By keyboard: Tab to the third, Enter; back to the first, Space.
    page.keyboard.press("Tab")
    expect(page.get_by_role("button", name="Picture 3 of 3")).to_be_focused()
    page.keyboard.press("Enter")
    shows(3)
    page.keyboard.press("Shift+Tab")
    page.keyboard.press("Shift+Tab")
    expect(page.get_by_role("button", name="Picture 1 of 3")).to_be_focused()
    page.keyboard.press("Space")
    shows(1)

    # One picture: no gallery to choose from.
    page.goto(f"/#/product/{catalog['shelf']}")
    expect(page.get_by_role("heading", level=1)).to_have_text("Walnut Shelf")
    shelf = page.get_by_role("img", name="Walnut Shelf", exact=True)
    expect(shelf).to_have_attribute("src", pictures["shelf"][0]["url"])
    expect(page.get_by_role("button", name=re.compile(r"^Picture"))).to_have_count(0)


# -- shipping ---------------------------------------------------------------------------------


def test_checkout_ships_by_the_method_chosen_and_the_order_keeps_it(page, shop, catalog, network):
    _to_checkout(page, "margaret", catalog["lamp"])

    place = page.get_by_role("button", name="Place order")
    ship_to = page.get_by_label("Ship to")
    total = page.locator("[data-total]")
    alert = page.get_by_role("alert")
    # Where the parcel may go: the zones, not the warehouse; nothing is ordered before a choice.
    expect(ship_to.locator("option")).to_have_text(
        ["Choose a destination", "Central hub", "Eastern Germany", "Iceland", "Poland"]
    )
    expect(place).to_be_disabled()
    expect(total).to_have_text("$49.00")

    # No warehouse reaches Iceland: the API's reason, and still nothing to order.
    ship_to.select_option(label="Iceland")
    expect(alert).to_have_text("No warehouse ships to this zone.")
    expect(page.get_by_role("radiogroup", name="Shipping method")).to_have_count(0)
    expect(page.locator(".shipping-options")).to_have_text("")
    expect(place).to_be_disabled()

    # Poland: both methods with their cost and days, economy chosen; the total follows.
    ship_to.select_option(label="Poland")
    methods = page.get_by_role("radiogroup", name="Shipping method")
    economy = methods.get_by_role("radio", name="Economy: $3.90, 5 days", exact=True)
    express = methods.get_by_role("radio", name="Express: $5.90, 2 days", exact=True)
    expect(methods.get_by_role("radio")).to_have_count(2)
    expect(economy).to_be_checked()
    expect(express).not_to_be_checked()
    expect(alert).to_be_hidden()
    expect(place).to_be_enabled()
    expect(total).to_have_text("$52.90")

    # Ordered by economy, but the request never reaches the server: that attempt's key is kept.
    sent: list[dict] = []

    def lose_the_first_request(route) -> None:
        if sent or route.request.method != "POST":
            route.continue_()
            return
        sent.append({"key": route.request.headers["idempotency-key"], "body": route.request.post_data_json})
        route.abort("connectionreset")

    page.route("**/api/orders/", lose_the_first_request)
    place.click()
    expect(alert).to_contain_text("Could not reach the shop")
    assert sent[0]["body"] == {"shipping": {"to": "PL", "method": "economy"}}

    # Express instead (by keyboard, as a radio group goes): another request, with a key of its own.
    economy.focus()
    page.keyboard.press("ArrowDown")
    expect(express).to_be_checked()
    expect(total).to_have_text("$54.90")
    with page.expect_response(
        lambda r: r.url.endswith("/api/orders/") and r.request.method == "POST"
    ) as answer:
        place.click()
    assert answer.value.status == 201
    assert answer.value.request.post_data_json == {"shipping": {"to": "PL", "method": "express"}}
    assert answer.value.request.headers["idempotency-key"] != sent[0]["key"]
    assert answer.value.headers.get("idempotent-replayed") is None
    page.unroute("**/api/orders/")

    # The order page shows what the API stored.
    expect(page.get_by_role("heading", level=1)).to_have_text(re.compile(r"^Order #\d+$"))
    order_id = int(page.get_by_role("heading", level=1).inner_text().split("#")[1])
    stored = requests.get(f"{shop}/api/orders/{order_id}/", headers=_log_in_as(shop, "margaret"), timeout=10)
    order = stored.json()
    assert (
        order["shipping_method"],
        order["shipping_cost"],
        order["shipping_route"],
        order["total_amount"],
    ) == (
        "express",
        "5.90",
        ["WH-NORTH", "DE-EAST", "PL"],
        "54.90",
    ), order
    shipped = f"Express, ${order['shipping_cost']}, {' → '.join(order['shipping_route'])}"
    expect(page.get_by_text(shipped)).to_be_visible()
    expect(page.locator(".items tfoot td").last).to_have_text(f"${order['total_amount']}")
    expect(page.get_by_role("heading", name=f"Pay ${order['total_amount']}")).to_be_visible()

    # And the history.
    page.get_by_role("link", name="Orders").click()
    row = page.get_by_role("listitem").filter(has=page.get_by_role("link", name=f"Order #{order_id}"))
    expect(row).to_contain_text(f"Shipping: {shipped}")
    expect(row).to_contain_text(f"${order['total_amount']}")


def test_a_shop_without_shipping_zones_checks_out_as_before(page, shop, catalog):
    _remove_network(shop)  # for real: the API answers no zones, as in a shop without a network
    try:
        _check_out_without_shipping(page, shop, catalog)
    finally:
        _build_network(shop)  # the module's other tests ship with it


def _check_out_without_shipping(page, shop, catalog) -> None:
    _to_checkout(page, "linus", catalog["lamp"])
    place = page.get_by_role("button", name="Place order")
    expect(place).to_be_enabled()
    expect(page.get_by_label("Ship to")).to_have_count(0)
    expect(page.get_by_role("radiogroup")).to_have_count(0)
    expect(page.locator("[data-total]")).to_have_text("$49.00")
    with page.expect_request(lambda r: r.url.endswith("/api/orders/") and r.method == "POST") as sent:
        place.click()
    assert sent.value.post_data_json == {}  # the body as before: no shipping

    expect(page.get_by_role("heading", level=1)).to_have_text(re.compile(r"^Order #\d+$"))
    order_id = int(page.get_by_role("heading", level=1).inner_text().split("#")[1])
    order = requests.get(
        f"{shop}/api/orders/{order_id}/", headers=_log_in_as(shop, "linus"), timeout=10
    ).json()
    assert (order["shipping_method"], order["shipping_cost"], order["total_amount"]) == (
        None,
        "0.00",
        "49.00",
    )
    expect(page.locator(".items tfoot tr")).to_have_count(1)  # the total alone
    expect(page.locator(".items tfoot td").last).to_have_text("$49.00")
    expect(page.get_by_text("Shipping:")).to_have_count(0)


# -- errors, as sentences ---------------------------------------------------------------------


def test_api_errors_are_shown_from_the_problem_detail(page, shop, catalog):
    alert = page.get_by_role("alert")

    page.goto("/#/login")
    _log_in(page, "ada", "not-the-password")
    expect(alert).to_contain_text("Invalid username or password")
    expect(page.get_by_role("heading", level=1)).to_have_text("Log in")

    # Short stock at checkout: the 409 names the product.
    _log_in(page, "ada")
    expect(page.get_by_role("heading", level=1)).to_have_text("All products")
    page.goto(f"/#/product/{catalog['lantern']}")
    expect(page.get_by_role("heading", level=1)).to_have_text("Paper Lantern")
    page.get_by_label("Quantity").fill("2")
    page.get_by_role("button", name="Add to cart").click()
    expect(_cart_link(page)).to_have_accessible_name("Cart (2)")
    _set_stock(shop, catalog["lantern"], 1)
    page.goto("/#/checkout")
    page.get_by_label("Ship to").select_option(label="Eastern Germany")
    page.get_by_role("button", name="Place order").click()
    expect(alert).to_contain_text("Paper Lantern")
    expect(page.get_by_role("heading", level=1)).to_have_text("Checkout")
    # Drawn again with the cart as it is now, and the shipping as it was chosen.
    expect(page.get_by_label("Ship to")).to_have_value("DE-EAST")
    expect(page.get_by_role("button", name="Place order")).to_be_enabled()

    # A review twice: the 409's detail, not a status code.
    page.goto(f"/#/product/{catalog['lamp']}")
    page.get_by_label("Rating").select_option("4")
    page.get_by_label("Your review").fill("Bright and steady.")
    page.get_by_role("button", name="Post review").click()
    expect(page.get_by_text("Bright and steady.")).to_be_visible()
    expect(page.get_by_text("Rated 4.0 out of 5 from 1 review").first).to_be_attached()
    page.goto("/#/")
    page.goto(f"/#/product/{catalog['lamp']}")
    page.get_by_label("Rating").select_option("2")
    page.get_by_role("button", name="Post review").click()
    expect(alert).to_have_text("You have already reviewed this product.")
    expect(page.get_by_text("Rated 4.0 out of 5 from 1 review").first).to_be_attached()

    # A filter the API refuses: the message, and the filters still there to fix it.
    page.goto("/#/?page=0")
    expect(alert).to_contain_text("Page")
    expect(page.get_by_label("Max price")).to_be_visible()
    page.get_by_label("Min price").fill("50")
    page.get_by_label("Max price").fill("10")
    page.get_by_role("button", name="Apply filters").click()
    expect(alert).to_have_text("Min price: it is above the max price.")

    page.reload()
    page.goto(f"/#/product/{catalog['lamp']}")  # the reload logged out: the tokens live in memory
    expect(page.get_by_role("link", name="Log in").first).to_be_visible()

    # 429 and 503 say when to try again, from Retry-After (the page's own error module).
    messages = page.evaluate(
        """async () => {
            const { problemMessage } = await import("/assets/js/api.js");
            return [
                problemMessage(429, {detail: "Rate limit exceeded"}, new Headers({"Retry-After": "7"})),
                problemMessage(
                    503, {detail: "The database is unavailable."}, new Headers({"Retry-After": "5"})),
                problemMessage(
                    422, {detail: "Invalid input.", errors: {quantity: ["Must be at least 1."]}},
                    new Headers()),
            ];
        }"""
    )
    assert messages == [
        "Too many requests; try again in 7 s.",
        "The database is unavailable. Please try again in 5 s.",
        "Invalid input. Quantity: Must be at least 1.",
    ]
    _set_stock(shop, catalog["lantern"], 2)


def test_the_wishlist_remembers_what_a_logged_out_shopper_asked_for(page, catalog):
    page.goto(f"/#/product/{catalog['lamp']}")
    page.get_by_role("button", name="Add to wishlist").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Log in")
    _log_in(page, "grace")
    expect(page.get_by_role("heading", level=1)).to_have_text("Brass Desk Lamp")
    page.get_by_role("link", name="Wishlist", exact=True).click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Wishlist")
    expect(page.get_by_role("link", name="Brass Desk Lamp")).to_be_visible()
    page.get_by_role("button", name="Remove Brass Desk Lamp from the wishlist").click()
    expect(page.get_by_text("Your wishlist is empty")).to_be_visible()


def test_registering_logs_in_and_logging_out_forgets_the_login(page):
    page.goto("/#/register")
    page.get_by_label("Username").fill("newcomer")
    page.get_by_label("Email").fill("newcomer@example.com")
    page.get_by_label("Password").fill("short")
    page.get_by_role("button", name="Register").click()
    # The browser's own check (minlength) stops it and says why; no account is made.
    too_short = page.get_by_label("Password").evaluate("field => field.validity.tooShort")
    assert too_short is True
    expect(page.get_by_role("heading", level=1)).to_have_text("Create an account")
    page.get_by_label("Password").fill("long enough password")
    page.get_by_role("button", name="Register").click()
    expect(page.get_by_role("button", name="Log out")).to_be_visible()
    page.get_by_role("button", name="Log out").click()
    expect(page.get_by_role("link", name="Log in")).to_be_visible()
    page.goto("/#/orders")
    expect(page.get_by_role("heading", level=1)).to_have_text("Log in")


# -- the catalog pages ------------------------------------------------------------------------


def test_filters_sort_and_pages(page, catalog):
    page.goto("/")
    expect(page.get_by_text("17 products")).to_be_visible()
    page.get_by_role("link", name="Furniture").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Furniture")
    expect(page.get_by_text("15 products")).to_be_visible()
    page.get_by_label("Sort by").select_option("-price")
    expect(page.locator(".card-title a").first).to_have_text("Walnut Shelf")
    page.get_by_role("link", name="Next →").click()
    expect(page.get_by_text("Page 2 of 2")).to_be_visible()
    expect(page.locator(".card-title a")).to_have_count(3)
    page.get_by_label("Max price").fill("31")
    page.get_by_role("button", name="Apply filters").click()
    expect(page.locator(".card-title a")).to_have_text(["Oak Stool 01", "Oak Stool 00"])


def test_the_home_page_fits_a_phone(browser, shop, catalog, pictures):
    context = browser.new_context(
        base_url=shop, viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True
    )
    try:
        page = context.new_page()
        page.goto("/")
        expect(page.locator(".card-title a").first).to_be_visible()
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"the page scrolls sideways by {overflow}px on a phone"
        expect(page.get_by_role("searchbox")).to_be_visible()
        expect(_cart_link(page)).to_be_visible()
    finally:
        context.close()


def test_a_missing_product_is_a_page_not_an_error(page):
    page.goto("/#/product/999999")
    expect(page.get_by_role("heading", level=1)).to_have_text("Product not found")
    page.goto("/#/product/%E0")  # not even a valid escape
    expect(page.get_by_role("heading", level=1)).to_have_text("Page not found")


def test_the_storefront_uses_only_its_own_origin(page, shop):
    """No CDN: every request the home page and a product page make stays on the shop's origin."""
    seen: list[str] = []
    page.on("request", lambda request: seen.append(request.url))
    page.goto("/")
    expect(page.locator(".card-title a").first).to_be_visible()
    page.locator(".card-title a").first.click()
    expect(page.locator(".live.on")).to_be_visible()
    assert seen and all(url.startswith(shop + "/") for url in seen), [
        u for u in seen if not u.startswith(shop)
    ]
