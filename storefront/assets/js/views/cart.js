// The cart: change a quantity, remove a line, the total, and Checkout (a logged-out shopper logs
// in first; the router sends them on to the checkout page afterwards).

import { isLoggedIn } from "../api.js";
import { loadCart, removeLine, setQuantity } from "../cart.js";
import { busy, emptyState, h, icon, money, stockText, thumb } from "../dom.js";
import { showError } from "../notices.js";
import { navigate, rerender } from "../router.js";

export async function cartView(root, ctx) {
  document.title = "Cart · Shop";
  const cart = await loadCart();
  if (!ctx.active) return;
  const heading = h("div", { class: "page-head" }, h("h1", {}, "Cart"));
  if (!cart.lines.length) {
    root.append(
      heading,
      emptyState("Your cart is empty", "Find something you like and add it here.", { href: "#/", label: "Browse products" }),
    );
    return;
  }

  const checkout = h("button", { type: "button", class: "btn btn-primary btn-block" }, icon("lock"), "Checkout");
  checkout.addEventListener("click", () => navigate("/checkout"));
  const units = cart.lines.reduce((sum, line) => sum + line.quantity, 0);

  root.append(
    heading,
    h(
      "div",
      { class: "cart-layout" },
      h("ul", { class: "lines", "aria-label": "Cart lines" }, cart.lines.map((line) => cartLine(line))),
      h(
        "aside",
        { class: "summary panel", "aria-labelledby": "summary-heading" },
        h("h2", { id: "summary-heading" }, "Summary"),
        h("div", { class: "summary-row" }, h("span", {}, units === 1 ? "1 item" : `${units} items`), h("span", {}, money(cart.total))),
        h("div", { class: "summary-row total" }, h("span", {}, "Total"), h("span", { "data-total": "" }, money(cart.total))),
        checkout,
        isLoggedIn() ? null : h("p", { class: "muted small" }, "You will be asked to log in; your cart comes with you."),
      ),
    ),
  );
}

function cartLine(line) {
  const name = line.product?.name ?? `Product #${line.productId}`;
  const quantityId = `qty-${line.id}`;
  const quantity = h("input", { type: "number", id: quantityId, min: "1", value: String(line.quantity), inputmode: "numeric" });
  const remove = h("button", { type: "button", class: "btn btn-small btn-danger", "aria-label": `Remove ${name}` }, icon("trash"), h("span", { "aria-hidden": "true" }, "Remove"));

  quantity.addEventListener("change", async () => {
    const value = Number(quantity.value);
    if (!Number.isInteger(value) || value < 1) {
      showError("Quantity: choose a whole number of at least 1 (or remove the line).");
      quantity.value = String(line.quantity);
      return;
    }
    quantity.disabled = true;
    try {
      await setQuantity(line, value);
      rerender();
    } catch (error) {
      showError(error);
      quantity.value = String(line.quantity);
      quantity.disabled = false;
    }
  });
  remove.addEventListener("click", () =>
    busy(remove, async () => {
      try {
        await removeLine(line);
        rerender();
      } catch (error) {
        showError(error);
      }
    }),
  );

  const stock = line.product?.stock_quantity;
  const short = stock !== undefined && stock < line.quantity;
  return h(
    "li",
    { class: "line" },
    thumb(line.product ?? { id: line.productId, name }, "small"),
    h(
      "div",
      { class: "line-info" },
      line.product ? h("a", { class: "line-name", href: `#/product/${line.productId}` }, name) : h("span", { class: "line-name" }, name),
      h("p", { class: "muted small" }, `${money(line.unitPrice)} each`),
      line.product
        ? h("p", { class: short ? "small stock-warning" : "muted small" }, short ? `Only ${stock} in stock` : stockText(stock))
        : h("p", { class: "small stock-warning" }, "No longer sold"),
    ),
    h(
      "div",
      { class: "line-controls" },
      h("label", { class: "visually-hidden", for: quantityId }, `Quantity of ${name}`),
      quantity,
      h("span", { class: "line-total" }, money(line.lineTotal)),
      remove,
    ),
  );
}
