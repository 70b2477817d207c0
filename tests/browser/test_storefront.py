"""The storefront in a real headless Chromium (Debian's ``chromium``, driven by Playwright).

The shop runs as it does in production, minus nginx: the real gunicorn (gevent workers) on the
test PostgreSQL and Redis, serving the API and the storefront's files, and the real Huey consumer
with the sandbox gateway and an SMTP server, so a payment is charged by the worker and its
status reaches the page over the order's event stream. The page is found the way a person (or a
screen reader) finds it: by roles and accessible names, which are part of the storefront's
contract.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from decimal import Decimal

import pytest
import requests
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


@pytest.fixture(scope="module")
def browser() -> Iterator:
    with playwright_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser, shop):
    """A fresh browser context (nothing remembered between tests); page errors fail the test."""
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
    expect(page.locator(".items tfoot td").last).to_have_text("$98.00")
    page.set_viewport_size({"width": 1280, "height": 900})

    with app.app_context():
        orders = db.session.scalars(
            select(Order).join(User, Order.user_id == User.id).where(User.username == "ada")
        ).all()
        assert [o.id for o in orders] == [order_id]
        assert orders[0].total_amount == Decimal("98.00")

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
    page.get_by_role("button", name="Place order").click()
    expect(alert).to_contain_text("Paper Lantern")
    expect(page.get_by_role("heading", level=1)).to_have_text("Checkout")

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


def test_the_home_page_fits_a_phone(browser, shop, catalog):
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
