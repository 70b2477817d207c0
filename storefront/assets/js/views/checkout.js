// Checkout: the cart once more, an optional shipping address, and "Place order". The order is
// sent with an Idempotency-Key kept until a definite answer, and the button cannot be pressed
// twice while it is sent: a double click or a retry after a lost answer makes one order.

import { loadCart, placeOrder } from "../cart.js";
import { busy, emptyState, h, icon, labelled, money, thumb } from "../dom.js";
import { showError, toast } from "../notices.js";
import { navigate, rerender } from "../router.js";

export async function checkoutView(root, ctx) {
  document.title = "Checkout · Shop";
  const cart = await loadCart();
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
  const form = h(
    "form",
    { class: "summary panel", "aria-labelledby": "order-summary-heading" },
    h("h2", { id: "order-summary-heading" }, "Your order"),
    h("div", { class: "summary-row total" }, h("span", {}, "Total"), h("span", {}, money(cart.total))),
    labelled(address, "Shipping address", "Optional. Where the parcel goes."),
    submit,
    h("p", { class: "muted small" }, "You pay on the next page. Stock is held for you once the order is placed."),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    busy(submit, async () => {
      let order;
      try {
        order = await placeOrder({ shippingAddress: address.value.trim() });
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
    });
  });

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
}
