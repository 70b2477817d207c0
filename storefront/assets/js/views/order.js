// One order: its status moving live (GET /api/orders/<id>/events/, read with fetch so the login's
// token goes with it; no polling, no reload), its lines, its shipping, its history, Pay and Cancel.

import { request } from "../api.js";
import { forgetPaymentKeys, pay } from "../cart.js";
import { busy, cents, dateTime, emptyState, fromCents, h, labelled, money, orderShipping, statusBadge } from "../dom.js";
import { showError, toast } from "../notices.js";
import { openEventStream } from "../sse.js";

const SANDBOX_TOKEN = "tok_visa";
const PAYMENT_WORDS = {
  pending: "Payment is being processed…",
  succeeded: "Payment received.",
  failed: "Payment failed.",
  refunded: "Payment refunded.",
};

const latestPayment = (order) => (order.payments ?? []).reduce((last, p) => (!last || p.id > last.id ? p : last), null);

export async function orderView(root, ctx) {
  const id = Number(ctx.params.id);
  let order;
  try {
    if (!Number.isInteger(id) || id < 1) throw Object.assign(new Error("not found"), { status: 404 });
    ({ data: order } = await request(`/api/orders/${id}/`, { auth: true }));
  } catch (error) {
    if (error?.status !== 404) throw error;
    document.title = "Order not found · Shop";
    root.append(
      emptyState("Order not found", "There is no order of yours at this address.", { href: "#/orders", label: "Your orders" }, { level: "h1" }),
    );
    return;
  }
  if (!ctx.active) return;
  document.title = `Order #${order.id} · Shop`;

  // The live state: the stream's events win over the detail read before it.
  const state = { status: order.order_status, payment: latestPayment(order)?.status ?? null };
  const badge = h("span", {});
  const paymentLine = h("span", { class: "muted" });
  // Focusable (not in the tab order): after Pay or Cancel, whose buttons go away, focus lands here.
  const statusRegion = h("p", { class: "order-status", role: "status", "aria-live": "polite", "aria-atomic": "true", tabindex: "-1" });
  let eventsSeen = 0;
  let detailReads = 0;
  const liveMark = h("span", { class: "live" }, "Connecting…");
  const timeline = h("ol", { class: "timeline" });
  const paySlot = h("div", {});
  const cancelSlot = h("div", {});

  const drawStatus = () => {
    badge.replaceChildren(statusBadge(state.status));
    paymentLine.textContent = state.payment ? PAYMENT_WORDS[state.payment] ?? `Payment ${state.payment}.` : "";
    statusRegion.replaceChildren(h("span", {}, "Status:"), badge, paymentLine);
    drawPay();
    drawCancel();
  };

  const drawTimeline = (events) => {
    timeline.replaceChildren(
      ...events.map((event) =>
        h(
          "li",
          {},
          h("time", { datetime: event.created_at, class: "muted small" }, dateTime(event.created_at)),
          h("span", {}, event.note || (event.from_status ? `${event.from_status} → ${event.to_status}` : `Order ${event.to_status}`)),
        ),
      ),
    );
  };

  async function refreshDetail() {
    const read = ++detailReads; // answers may come back out of order: only the newest is drawn
    try {
      const { data } = await request(`/api/orders/${id}/`, { auth: true });
      if (!ctx.active || read !== detailReads) return;
      order = data;
      drawTimeline(order.events ?? []);
    } catch {
      // The status above is already current; the history catches up on the next event.
    }
  }

  function drawPay() {
    const payable = state.status === "pending" && state.payment !== "pending" && state.payment !== "succeeded";
    if (!payable) {
      paySlot.replaceChildren();
      return;
    }
    if (paySlot.firstChild) return; // keep what the shopper typed
    const token = h("input", { type: "text", id: "payment-token", name: "token", value: SANDBOX_TOKEN, autocomplete: "off", spellcheck: "false", maxlength: "200" });
    const submit = h("button", { type: "submit", class: "btn btn-primary btn-block" }, "Pay");
    const form = h(
      "form",
      { class: "panel pay-form", "aria-labelledby": "pay-heading" },
      h("h2", { id: "pay-heading" }, `Pay ${money(order.total_amount)}`),
      labelled(token, "Payment token", "Sandbox card: tok_visa is approved, tok_decline is declined."),
      submit,
    );
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      busy(submit, async () => {
        const seenBefore = eventsSeen;
        try {
          await pay(id, token.value.trim());
        } catch (error) {
          showError(error);
          return;
        }
        if (!ctx.active) return;
        toast("Payment sent. The status below follows it.");
        // The stream may already have brought the payment's fate: then it is the truth.
        if (eventsSeen === seenBefore) state.payment = "pending";
        drawStatus();
        statusRegion.focus();
      });
    });
    paySlot.replaceChildren(form);
  }

  function drawCancel() {
    if (state.status !== "pending" && state.status !== "paid") {
      cancelSlot.replaceChildren();
      return;
    }
    if (cancelSlot.firstChild) return;
    const ask = h("button", { type: "button", class: "btn btn-danger btn-block" }, "Cancel order");
    ask.addEventListener("click", () => {
      // Asked on the page, not with window.confirm: a confirmation a screen reader reads in place.
      const yes = h("button", { type: "button", class: "btn btn-danger" }, "Yes, cancel the order");
      const no = h("button", { type: "button", class: "btn" }, "Keep it");
      no.addEventListener("click", () => {
        cancelSlot.replaceChildren();
        drawCancel();
        cancelSlot.querySelector("button")?.focus();
      });
      yes.addEventListener("click", () =>
        busy(yes, async () => {
          try {
            const { data } = await request(`/api/orders/${id}/cancel/`, { method: "POST", auth: true });
            if (!ctx.active) return;
            state.status = data.order_status;
            drawStatus();
            statusRegion.focus();
            toast(`Order #${id} cancelled.`);
          } catch (error) {
            showError(error);
          }
        }),
      );
      const refund = state.status === "paid" ? " The payment will be refunded." : "";
      cancelSlot.replaceChildren(
        h("div", { class: "panel", role: "group", "aria-label": "Cancel the order" }, h("p", {}, `Cancel order #${id}?${refund}`), h("div", { class: "actions" }, yes, no)),
      );
      yes.focus();
    });
    cancelSlot.replaceChildren(ask);
  }

  const stream = openEventStream(`/api/orders/${id}/events/`, {
    onEvent(event) {
      if (event.type !== "order" || !ctx.active) return;
      let data;
      try {
        data = JSON.parse(event.data);
      } catch {
        return;
      }
      eventsSeen += 1;
      const changed = data.order_status !== state.status || (data.payment_status ?? null) !== state.payment;
      state.status = data.order_status;
      state.payment = data.payment_status ?? null;
      if (state.payment === "failed") forgetPaymentKeys(id); // the next Pay is a new attempt
      if (changed) {
        drawStatus();
        refreshDetail();
      }
    },
    onState(value) {
      liveMark.classList.toggle("on", value === "open");
      liveMark.textContent = value === "open" ? "Live" : value === "reconnecting" ? "Reconnecting…" : "Not live";
    },
    onFatal(error) {
      if (ctx.active) showError(error);
    },
  });
  ctx.onLeave(() => stream.close());

  const items = order.items ?? [];
  const shipping = orderShipping(order);
  const subtotal = fromCents(items.reduce((sum, item) => sum + cents(item.price) * item.quantity, 0));
  // A footer row: the label under Product and Price, an empty cell under Qty (gone on a phone,
  // with the Price column: the amount stays under Total), the amount.
  const footRow = (label, amount) =>
    h("tr", {}, h("td", { colspan: "2" }, label), h("td", { class: "spacer" }), h("td", { class: "num" }, money(amount)));
  root.append(
    h(
      "div",
      { class: "page-head" },
      h("h1", {}, `Order #${order.id}`),
      h("p", { class: "muted" }, `Placed ${dateTime(order.created_at)}`),
    ),
    h(
      "div",
      { class: "order-layout" },
      h(
        "div",
        {},
        h("section", { class: "panel status-card", "aria-label": "Order status" }, statusRegion, liveMark),
        h(
          "section",
          { class: "panel", "aria-labelledby": "items-heading" },
          h("h2", { id: "items-heading" }, "Items"),
          h(
            "table",
            { class: "items" },
            h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Product"), h("th", { scope: "col", class: "num" }, "Price"), h("th", { scope: "col", class: "num" }, "Qty"), h("th", { scope: "col", class: "num" }, "Total"))),
            h(
              "tbody",
              {},
              items.map((item) =>
                h(
                  "tr",
                  {},
                  h("td", {}, item.product_id ? h("a", { href: `#/product/${item.product_id}` }, item.product_name) : item.product_name),
                  h("td", { class: "num" }, money(item.price)),
                  h("td", { class: "num" }, String(item.quantity)),
                  h("td", { class: "num" }, money(fromCents(cents(item.price) * item.quantity))),
                ),
              ),
            ),
            h(
              "tfoot",
              {},
              shipping ? [footRow("Subtotal", subtotal), footRow("Shipping", order.shipping_cost)] : null,
              footRow("Total", order.total_amount),
            ),
          ),
          shipping ? h("p", { class: "order-shipping" }, h("span", { class: "label" }, "Shipping: "), shipping) : null,
          order.shipping_address ? h("p", { class: "muted small" }, `Ships to: ${order.shipping_address}`) : null,
        ),
      ),
      h(
        "div",
        { class: "side" },
        paySlot,
        cancelSlot,
        h("section", { class: "panel", "aria-labelledby": "history-heading" }, h("h2", { id: "history-heading" }, "History"), timeline),
      ),
    ),
  );
  drawTimeline(order.events ?? []);
  drawStatus();
}
