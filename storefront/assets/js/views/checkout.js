// Checkout: the cart once more, where the parcel goes and how (a shipping zone, then economy or
// express from its quote), an optional shipping address, and "Place order". The order is sent
// with an Idempotency-Key kept until a definite answer, and the button cannot be pressed twice
// while it is sent: a double click or a retry after a lost answer makes one order. A shop with
// no shipping zones checks out without shipping.

import { onSessionChange, pagination, request } from "../api.js";
import { loadCart, placeOrder } from "../cart.js";
import { busy, cents, emptyState, fromCents, h, icon, labelled, money, shippingOption, thumb } from "../dom.js";
import { clearError, showError, toast } from "../notices.js";
import { navigate, rerender } from "../router.js";

// The shopper's last choice ({to, method}), kept while the page is drawn again (after a short
// stock refusal, or a visit to the cart); another login starts afresh.
let remembered = null;
onSessionChange(() => {
  remembered = null;
});

/** The zones goods ship to (every page of them, warehouses left out), by name; [] without a network. */
async function destinations() {
  const zones = [];
  let page = 1;
  while (page) {
    const { data, headers } = await request(`/api/shipping/zones/?page=${page}&page_size=100`);
    zones.push(...data);
    const next = Number(pagination(headers).next_page);
    page = next > page ? next : 0;
  }
  return zones.filter((zone) => !zone.is_warehouse).sort((a, b) => a.name.localeCompare(b.name));
}

/** A route's codes, "WH-NORTH → DE-EAST → PL", each kept whole when the line wraps. */
function routeCodes(codes) {
  return (codes ?? []).flatMap((code, i) => [i ? " → " : null, h("span", { class: "zone-code" }, code)]);
}

/** Why a zone has no quote, as a sentence: "No warehouse ships to this zone." */
function quoteRefusal(error) {
  const reasons = error?.status === 422 ? [].concat(error.problem?.errors?.to ?? []) : [];
  const reason = reasons.find((message) => typeof message === "string");
  return reason ?? error?.message ?? "Shipping to this zone could not be quoted.";
}

export async function checkoutView(root, ctx) {
  document.title = "Checkout · Shop";
  const [cart, zones] = await Promise.all([loadCart(), destinations()]);
  if (!ctx.active) return;
  const heading = h("div", { class: "page-head" }, h("h1", {}, "Checkout"));
  if (!cart.lines.length) {
    root.append(
      heading,
      emptyState("Your cart is empty", "There is nothing to order yet.", { href: "#/", label: "Browse products" }),
    );
    return;
  }

  const address = h("textarea", { id: "shipping-address", name: "shipping_address", maxlength: "1000", rows: "3", autocomplete: "street-address" });
  const submit = h("button", { type: "submit", class: "btn btn-primary btn-block" }, icon("lock"), "Place order");
  const total = h("span", { "data-total": "" }, money(cart.total));
  const shipping = zones.length ? shippingChoice(zones, cart, ctx, { total, onChange: ready }) : null;
  // Without a network nothing stops the order; with one, a reachable zone and a method must be chosen.
  function ready() {
    submit.disabled = Boolean(shipping) && !shipping.choice();
    return !submit.disabled;
  }

  const form = h(
    "form",
    { class: "summary panel", "aria-labelledby": "order-summary-heading" },
    h("h2", { id: "order-summary-heading" }, "Your order"),
    shipping ? shipping.rows : null,
    h("div", { class: "summary-row total", "aria-live": shipping ? "polite" : null, "aria-atomic": shipping ? "true" : null }, h("span", {}, "Total"), total),
    shipping ? shipping.fields : null,
    labelled(address, "Shipping address", "Optional. Where the parcel goes."),
    submit,
    h("p", { class: "muted small" }, "You pay on the next page. Stock is held for you once the order is placed."),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    if (!ready()) return; // Enter in a field while no shipping is chosen
    busy(submit, async () => {
      let order;
      try {
        order = await placeOrder({ shippingAddress: address.value.trim(), shipping: shipping?.choice() ?? null });
      } catch (error) {
        showError(error);
        // Short stock or a line gone: show the cart as it is now (the message names the product).
        if (error?.status === 409 && ctx.active) {
          const message = error.message;
          rerender();
          setTimeout(() => showError(message));
        }
        return;
      }
      toast(`Order #${order.id} placed.`);
      navigate(`/orders/${order.id}`);
    }).finally(ready); // busy() enabled the button; the shipping choice decides
  });
  ready();

  root.append(
    heading,
    h(
      "div",
      { class: "cart-layout" },
      h(
        "ul",
        { class: "lines", "aria-label": "Items to order" },
        cart.lines.map((line) =>
          h(
            "li",
            { class: "line" },
            thumb(line.product ?? { id: line.productId }, "small"),
            h(
              "div",
              { class: "line-info" },
              h("span", { class: "line-name" }, line.product?.name ?? `Product #${line.productId}`),
              h("p", { class: "muted small" }, `${line.quantity} × ${money(line.unitPrice)}`),
            ),
            h("span", { class: "line-total" }, money(line.lineTotal)),
          ),
        ),
        h("li", {}, h("a", { href: "#/cart" }, "Change the cart")),
      ),
      form,
    ),
  );
  shipping?.restore();
}

/**
 * "Ship to" (a select of the zones) and "Shipping method" (the quote's options as radios, economy
 * first chosen), with the summary's subtotal and shipping rows; ``total`` is redrawn as the
 * subtotal plus the chosen option's cost. ``choice()`` is ``{to, method}`` once a reachable zone
 * and a method are chosen, else null.
 */
function shippingChoice(zones, cart, ctx, { total, onChange }) {
  const zone = h(
    "select",
    { id: "ship-to", name: "ship_to", required: true },
    h("option", { value: "" }, "Choose a destination"),
    zones.map((z) => h("option", { value: z.code }, z.name)),
  );
  const options = h("div", { class: "shipping-options" });
  const shippingAmount = h("span", { class: "muted" }, "Choose a destination");
  let quote = null; // the chosen zone's quote
  let method = null;
  let quoteReads = 0;
  let refusal = null; // the sentence shown in the alert for the zone chosen

  const chosen = () => quote?.options.find((option) => option.method === method) ?? null;

  const drawTotals = () => {
    const option = chosen();
    shippingAmount.className = option ? "" : "muted";
    if (option) shippingAmount.textContent = money(option.cost);
    else if (!zone.value) shippingAmount.textContent = "Choose a destination";
    else if (refusal) shippingAmount.textContent = "Not available";
    else shippingAmount.textContent = quote ? "Choose a method" : "…";
    total.textContent = money(fromCents(cents(cart.total) + (option ? cents(option.cost) : 0)));
    onChange();
  };

  const drawOptions = () => {
    if (!quote) {
      const finding = zone.value && !refusal;
      options.replaceChildren(...(finding ? [h("p", { class: "muted small" }, "Finding the shipping options…")] : []));
      return;
    }
    const radios = quote.options.map((option) => {
      const id = `ship-${option.method}`;
      const input = h("input", {
        type: "radio",
        id,
        name: "shipping_method",
        value: option.method,
        checked: option.method === method,
        "aria-describedby": `${id}-route`,
      });
      input.addEventListener("change", () => {
        method = input.value;
        remembered = { to: zone.value, method };
        drawTotals();
      });
      return h(
        "div",
        { class: "shipping-option" },
        input,
        h("label", { for: id }, shippingOption(option)),
        h("p", { class: "hint", id: `${id}-route` }, "Route: ", routeCodes(option.route)),
      );
    });
    options.replaceChildren(
      h(
        "fieldset",
        { class: "shipping-methods", role: "radiogroup", "aria-labelledby": "shipping-method-legend" },
        h("legend", { id: "shipping-method-legend", class: "label" }, "Shipping method"),
        radios,
      ),
    );
  };

  async function choose(code, preferred = null) {
    const read = ++quoteReads; // answers may come back out of order: only the last choice counts
    quote = null;
    method = null;
    if (refusal) clearError(refusal);
    refusal = null;
    drawOptions();
    drawTotals();
    if (!code) return;
    try {
      const { data } = await request(`/api/shipping/quote/?to=${encodeURIComponent(code)}`);
      if (!ctx.active || read !== quoteReads) return;
      quote = data;
      const methods = quote.options.map((option) => option.method);
      method = methods.includes(preferred) ? preferred : methods.includes("economy") ? "economy" : (methods[0] ?? null);
      remembered = { to: code, method };
    } catch (error) {
      if (!ctx.active || read !== quoteReads) return;
      // No warehouse reaches it (422), or it is gone (404): say so; the order waits for another.
      refusal = quoteRefusal(error);
      showError(refusal);
    }
    drawOptions();
    drawTotals();
  }

  zone.addEventListener("change", () => {
    remembered = zone.value ? { to: zone.value, method: null } : null;
    choose(zone.value);
  });

  return {
    rows: [
      h("div", { class: "summary-row" }, h("span", {}, "Subtotal"), h("span", {}, money(cart.total))),
      h("div", { class: "summary-row" }, h("span", {}, "Shipping"), shippingAmount),
    ],
    fields: h("div", { class: "shipping" }, labelled(zone, "Ship to"), options),
    choice: () => (chosen() ? { to: quote.to, method } : null),
    /** The choice made before this page was drawn again, if its zone is still offered. */
    restore() {
      if (remembered && zones.some((z) => z.code === remembered.to)) {
        zone.value = remembered.to;
        choose(remembered.to, remembered.method);
      }
    },
  };
}
