"""Screenshots of the storefront's main pages, for docs/storefront/ and the README.

Against a running shop with its demo catalog (``make run``), in Debian's chromium driven by
Playwright: a shopper searches, opens a product (one with several pictures), fills the cart,
registers at checkout, chooses where the parcel goes and how (when the shop has a shipping
network), orders and pays (the worker of ``make run`` charges the sandbox card and the order page
turns "paid" live), then the same pages at a phone's width.

    .venv/bin/python scripts/storefront_screenshots.py [--base-url URL] [--out docs/storefront]

It makes a new account (``shopper-<time>``) and one order in the shop it is pointed at.
"""

from __future__ import annotations

import argparse
import os
import re
import time
from pathlib import Path

from playwright.sync_api import expect, sync_playwright

ROOT = Path(__file__).resolve().parents[1]
DESKTOP = {"width": 1280, "height": 860}
PHONE = {"width": 390, "height": 844}
SHIP_TO = "Poland"  # a zone of the demo network where economy and express differ
# The pictures in view have loaded (a lazy one further down has not even been asked for).
# A function, not an expression: the shop's CSP refuses the eval Playwright uses for those.
PICTURES_IN_VIEW_LOADED = (
    "() => [...document.images].filter((img) => img.getBoundingClientRect().top < innerHeight)"
    ".every((img) => img.complete)"
)


def showcase_product(page) -> str:
    """The name of the best rated product in stock with a gallery (else with a picture, else the
    best rated in stock): a product page with its pictures and reviews makes the better picture,
    and two of it go into the cart."""
    answer = page.request.get("/api/products/?sort=-rating&page_size=100")
    assert answer.ok, answer.text()
    products = [product for product in answer.json() if product["stock_quantity"] >= 5]
    for enough in (2, 1, 0):
        for product in products:
            if len(product.get("images") or []) >= enough:
                return product["name"]
    raise SystemExit("the shop has no products: run `make run` (it seeds a demo catalog)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-url", default=os.environ.get("SHOP_URL", "http://127.0.0.1:8000"))
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "storefront")
    parser.add_argument("--chromium", default=os.environ.get("CHROMIUM", "/usr/bin/chromium"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    def shot(page, name: str, full_page: bool = False) -> None:
        page.wait_for_timeout(300)  # let a toast or the live mark settle
        path = args.out / f"{name}.png"
        page.screenshot(path=str(path), full_page=full_page)
        print(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path)

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=args.chromium)
        context = browser.new_context(base_url=args.base_url, viewport=DESKTOP)
        page = context.new_page()

        page.goto("/")
        expect(page.locator(".card-title a").first).to_be_visible()
        page.wait_for_function(PICTURES_IN_VIEW_LOADED)
        shot(page, "home")

        name = showcase_product(page)
        page.get_by_role("searchbox").fill(name)
        page.get_by_role("searchbox").press("Enter")
        page.get_by_role("link", name=name, exact=True).first.click()
        expect(page.get_by_role("heading", level=1)).to_have_text(name)
        expect(page.locator(".live.on")).to_be_visible()
        product_url = page.url
        if page.get_by_role("button", name=re.compile(r"^Picture 2 of")).count():
            page.get_by_role("button", name=re.compile(r"^Picture 2 of")).click()
            page.mouse.move(0, 0)  # no hover outline in the picture
        page.wait_for_function(PICTURES_IN_VIEW_LOADED)
        shot(page, "product", full_page=True)

        page.get_by_label("Quantity").fill("2")
        page.get_by_role("button", name="Add to cart").click()
        expect(page.get_by_role("link", name=re.compile("^Cart"))).to_have_accessible_name("Cart (2)")
        page.goto("/#/?sort=price")
        page.locator(".card-title a").nth(2).click()
        page.get_by_role("button", name="Add to cart").click()
        expect(page.get_by_role("link", name=re.compile("^Cart"))).to_have_accessible_name("Cart (3)")
        page.get_by_role("link", name=re.compile("^Cart")).click()
        expect(page.get_by_role("button", name="Checkout")).to_be_visible()
        page.wait_for_timeout(4000)  # the "added" toast fades
        shot(page, "cart")

        page.get_by_role("button", name="Checkout").click()
        page.get_by_role("link", name="Create an account").click()
        username = f"shopper-{int(time.time())}"
        page.get_by_label("Username").fill(username)
        page.get_by_label("Email").fill(f"{username}@example.com")
        page.get_by_label("Password").fill("a long sandbox password")
        page.get_by_role("button", name="Register").click()
        expect(page.get_by_role("button", name="Place order")).to_be_visible()
        if page.get_by_label("Ship to").count():  # the shop ships: where to, and how
            page.get_by_label("Ship to").select_option(label=SHIP_TO)
            methods = page.get_by_role("radiogroup", name="Shipping method")
            methods.get_by_role("radio", name=re.compile("^Express")).check()
        page.get_by_label("Shipping address").fill("ul. Portowa 12\n80-001 Gdańsk")
        page.wait_for_function(PICTURES_IN_VIEW_LOADED)
        expect(page.locator(".toast")).to_have_count(0, timeout=6000)  # "Welcome!" fades
        shot(page, "checkout", full_page=True)

        page.get_by_role("button", name="Place order").click()
        expect(page.get_by_role("button", name="Pay")).to_be_visible()
        page.get_by_role("button", name="Pay").click()
        expect(page.get_by_role("status")).to_contain_text("paid", timeout=30_000)
        page.wait_for_timeout(4500)  # the toast fades
        shot(page, "order-paid")

        page.get_by_role("link", name="Orders").click()
        expect(page.locator(".order-row").first).to_be_visible()
        shot(page, "orders")
        context.close()

        phone = browser.new_context(
            base_url=args.base_url, viewport=PHONE, device_scale_factor=2, is_mobile=True, has_touch=True
        )
        page = phone.new_page()
        page.goto("/")
        expect(page.locator(".card-title a").first).to_be_visible()
        page.wait_for_function(PICTURES_IN_VIEW_LOADED)
        shot(page, "phone-home")
        page.goto(product_url)
        expect(page.locator(".live.on")).to_be_visible()
        shot(page, "phone-product")
        phone.close()
        browser.close()


if __name__ == "__main__":
    main()
