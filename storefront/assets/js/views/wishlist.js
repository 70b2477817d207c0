// The wishlist: what the shopper keeps for later, with its price and stock now, to the cart in
// one click, or off the list.

import { request } from "../api.js";
import { addToCart } from "../cart.js";
import { findProduct } from "../catalog.js";
import { busy, emptyState, h, icon, money, stockBadge, thumb } from "../dom.js";
import { showError, toast } from "../notices.js";
import { rerender } from "../router.js";

export async function wishlistView(root, ctx) {
  document.title = "Wishlist · Shop";
  const { data } = await request("/api/wishlist/", { auth: true });
  const products = await Promise.all(data.items.map((item) => findProduct(item.product_id)));
  if (!ctx.active) return;
  root.append(h("div", { class: "page-head" }, h("h1", {}, "Wishlist")));
  if (!data.items.length) {
    root.append(
      emptyState("Your wishlist is empty", "Press “Add to wishlist” on a product to keep it here.", { href: "#/", label: "Browse products" }),
    );
    return;
  }
  root.append(
    h(
      "ul",
      { class: "lines", "aria-label": "Wishlist" },
      data.items.map((item, i) => wishLine(item, products[i])),
    ),
  );
}

function wishLine(item, product) {
  const name = product?.name ?? `Product #${item.product_id}`;
  const remove = h("button", { type: "button", class: "btn btn-small btn-danger", "aria-label": `Remove ${name} from the wishlist` }, icon("trash"), h("span", { "aria-hidden": "true" }, "Remove"));
  remove.addEventListener("click", () =>
    busy(remove, async () => {
      try {
        await request(`/api/wishlist/items/${item.id}/`, { method: "DELETE", auth: true });
        rerender();
      } catch (error) {
        showError(error);
      }
    }),
  );
  const add = h("button", { type: "button", class: "btn btn-small btn-primary", "aria-label": `Add ${name} to cart`, disabled: !product || product.stock_quantity <= 0 }, icon("cart"), h("span", { "aria-hidden": "true" }, "Add to cart"));
  add.addEventListener("click", () =>
    busy(add, async () => {
      try {
        await addToCart(item.product_id, 1);
        toast(`Added ${name} to your cart.`, { href: "#/cart", text: "View cart" });
      } catch (error) {
        showError(error);
      }
    }),
  );
  return h(
    "li",
    { class: "line" },
    thumb(product ?? { id: item.product_id, name }, "small"),
    h(
      "div",
      { class: "line-info" },
      product ? h("a", { class: "line-name", href: `#/product/${item.product_id}` }, name) : h("span", { class: "line-name" }, name),
      product ? h("p", { class: "small" }, money(product.price), " · ", stockBadge(product.stock_quantity)) : h("p", { class: "small stock-warning" }, "No longer sold"),
    ),
    h("div", { class: "line-controls" }, add, remove),
  );
}
