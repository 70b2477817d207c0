// A product: its pictures, details, its stock live (GET /api/products/<id>/events/), add to cart
// or wishlist, and its reviews (read, and write one when logged in).

import { isLoggedIn, pagination, request } from "../api.js";
import { addToCart } from "../cart.js";
import { categoryTree, getCategories, getProduct } from "../catalog.js";
import { busy, date, emptyState, h, icon, labelled, money, picture, rating, stars, stockBadge, thumb } from "../dom.js";
import { showError, toast } from "../notices.js";
import { link, loginThen } from "../router.js";

const REVIEWS_PAGE = 10;

export async function addToWishlist(productId) {
  await request("/api/wishlist/items/", { method: "POST", auth: true, body: { product_id: Number(productId) } });
  toast("Added to your wishlist.", { href: "#/wishlist", text: "View wishlist" });
}

function notFound(root) {
  document.title = "Not found · Shop";
  root.append(
    emptyState("Product not found", "It may have been taken off the shop.", { href: "#/", label: "Back to the shop" }, { level: "h1" }),
  );
}

export async function productView(root, ctx) {
  const id = Number(ctx.params.id);
  if (!Number.isInteger(id) || id < 1) {
    notFound(root);
    return;
  }
  let product;
  let categories = [];
  try {
    [product, categories] = await Promise.all([getProduct(id, { fresh: true }), getCategories().catch(() => [])]);
  } catch (error) {
    if (error?.status !== 404) throw error;
    notFound(root);
    return;
  }
  if (!ctx.active) return;
  document.title = `${product.name} · Shop`;
  const tree = categoryTree(categories);

  // -- stock, live --------------------------------------------------------------------------
  let stock = product.stock_quantity;
  const stockSlot = h("span", { "aria-live": "polite" }, stockBadge(stock)); // changes are read out
  const liveMark = h("span", { class: "live", title: "Stock updates live" }, "Connecting…");
  const quantity = h("input", { type: "number", id: "quantity", name: "quantity", min: "1", max: String(Math.max(1, stock)), value: "1", inputmode: "numeric" });
  const addButton = h("button", { type: "button", class: "btn btn-primary" }, icon("cart"), "Add to cart");
  const wishButton = h("button", { type: "button", class: "btn" }, icon("heart"), "Add to wishlist");

  const drawStock = () => {
    stockSlot.replaceChildren(stockBadge(stock));
    addButton.disabled = stock <= 0;
    quantity.max = String(Math.max(1, stock));
  };
  drawStock();

  // EventSource reconnects by itself after a dropped connection, but not after an error answer
  // (a 503 from a worker full of streams, a proxy's 502): then this opens it again, waiting
  // longer each time. The first event of a new stream is the stock as it is then.
  let events = null;
  let failures = 0;
  let retryTimer = 0;
  let left = false;
  const setLive = (on) => {
    liveMark.classList.toggle("on", on);
    liveMark.textContent = on ? "Live" : "Reconnecting…";
  };
  const openStock = () => {
    events = new EventSource(`/api/products/${id}/events/`);
    events.addEventListener("open", () => setLive(true));
    events.addEventListener("error", () => {
      setLive(false);
      if (events.readyState !== EventSource.CLOSED || left) return;
      failures += 1;
      retryTimer = setTimeout(openStock, Math.min(30_000, 2_000 * 2 ** Math.min(failures, 4)));
    });
    events.addEventListener("stock", (event) => {
      try {
        const data = JSON.parse(event.data);
        if (Number(data.product_id) !== id) return;
        stock = Number(data.stock_quantity);
      } catch {
        return;
      }
      failures = 0;
      setLive(true);
      if (!addButton.hasAttribute("aria-busy")) drawStock(); // busy: drawn when the add ends
    });
  };
  openStock();
  ctx.onLeave(() => {
    left = true;
    clearTimeout(retryTimer);
    events.close();
  });

  addButton.addEventListener("click", () =>
    busy(addButton, async () => {
      const count = Number(quantity.value);
      if (!Number.isInteger(count) || count < 1) {
        showError("Quantity: choose a whole number of at least 1.");
        return;
      }
      try {
        await addToCart(id, count);
        toast(`Added ${product.name} to your cart.`, { href: "#/cart", text: "View cart" });
      } catch (error) {
        showError(error);
      }
    }).finally(drawStock), // busy() enabled it; the stock (maybe moved meanwhile) decides
  );
  wishButton.addEventListener("click", () =>
    busy(wishButton, async () => {
      if (!isLoggedIn()) {
        loginThen(`/product/${id}`, () => addToWishlist(id));
        return;
      }
      try {
        await addToWishlist(id);
      } catch (error) {
        showError(error);
      }
    }),
  );

  const trail = tree.path(product.category_id);
  root.append(
    h(
      "nav",
      { class: "breadcrumb", "aria-label": "Breadcrumb" },
      h(
        "ol",
        {},
        h("li", {}, h("a", { href: "#/" }, "Shop")),
        trail.map((category) => h("li", {}, h("a", { href: `#${link("/", { category: category.id })}` }, category.name))),
      ),
    ),
    h(
      "div",
      { class: "product" },
      gallery(product),
      h(
        "div",
        { class: "product-info" },
        h("h1", {}, product.name),
        rating(product.rating_avg, product.rating_count),
        h("p", { class: "price" }, money(product.price)),
        h("div", { class: "stock-live" }, stockSlot, liveMark),
        h(
          "div",
          { class: "actions" },
          labelled(quantity, "Quantity", null, "field qty"),
        ),
        h("div", { class: "actions" }, addButton, wishButton),
        product.description ? h("div", { class: "description" }, product.description) : null,
      ),
    ),
  );

  root.append(await reviewsSection(product, ctx));
}

/**
 * The pictures: the main one large and, when there are several, a row of thumbnail buttons
 * ("Picture 2 of 3", pressed for the one shown) that put theirs in its place. Without pictures,
 * the neutral block with the product's initials.
 */
function gallery(product) {
  const images = product.images ?? [];
  if (!images.length) return thumb(product, "large");
  const count = images.length;
  const altOf = (i) => (i === 0 ? product.name : `${product.name}, picture ${i + 1} of ${count}`);
  const main = picture(images[0], altOf(0), { full: true, lazy: false });
  if (count === 1) return h("div", { class: "gallery" }, h("div", { class: "gallery-main" }, main));

  const buttons = images.map((image, i) =>
    h(
      "button",
      { type: "button", class: "gallery-thumb", "aria-label": `Picture ${i + 1} of ${count}`, "aria-pressed": String(i === 0) },
      picture(image, "", { lazy: false }),
    ),
  );
  buttons.forEach((button, i) =>
    button.addEventListener("click", () => {
      const shown = picture(images[i], altOf(i), { full: true, lazy: false });
      for (const name of ["src", "alt", "width", "height"]) {
        if (shown.hasAttribute(name)) main.setAttribute(name, shown.getAttribute(name));
        else main.removeAttribute(name);
      }
      for (const other of buttons) other.setAttribute("aria-pressed", String(other === button));
    }),
  );
  return h(
    "div",
    { class: "gallery" },
    h("div", { class: "gallery-main" }, main),
    h("div", { class: "gallery-thumbs", role: "group", "aria-label": `Pictures of ${product.name}` }, buttons),
  );
}

async function reviewsSection(product, ctx) {
  const list = h("ol", { class: "review-list" });
  const more = h("div", {});
  const summary = h("div", { class: "review-summary panel" });
  const section = h(
    "section",
    { class: "reviews", "aria-labelledby": "reviews-heading" },
    h("h2", { id: "reviews-heading" }, "Reviews"),
    h("div", {}, summary, reviewForm(product, ctx, () => reload())),
    h("div", {}, list, more),
  );

  const drawSummary = (current) => {
    const parts = [rating(current.rating_avg, current.rating_count)];
    if (current.rating_count) parts.unshift(h("p", { class: "big", "aria-hidden": "true" }, Number(current.rating_avg).toFixed(1)));
    summary.replaceChildren(...parts);
  };

  async function loadPage(page) {
    const { data, headers } = await request(`/api/products/${product.id}/reviews/?page=${page}&page_size=${REVIEWS_PAGE}`);
    const meta = pagination(headers);
    list.append(...data.map(reviewItem));
    if (!list.children.length) list.append(h("li", { class: "muted" }, "No reviews yet. Be the first to write one."));
    more.replaceChildren();
    if (meta.next_page) {
      const button = h("button", { type: "button", class: "btn btn-small" }, "More reviews");
      button.addEventListener("click", () => busy(button, () => loadPage(meta.next_page).catch(showError)));
      more.append(button);
    }
  }

  async function reload() {
    const fresh = await getProduct(product.id, { fresh: true });
    if (!ctx.active) return;
    drawSummary(fresh);
    list.replaceChildren();
    await loadPage(1);
  }

  drawSummary(product);
  try {
    await loadPage(1);
  } catch (error) {
    showError(error);
  }
  return section;
}

function reviewItem(review) {
  return h(
    "li",
    { class: "review" },
    h(
      "div",
      { class: "review-head" },
      h("strong", {}, review.username || "A shopper"),
      stars(review.rating),
      h("span", { class: "muted small" }, date(review.created_at)),
    ),
    review.comment ? h("p", {}, review.comment) : null,
  );
}

function reviewForm(product, ctx, onPosted) {
  if (!isLoggedIn()) {
    return h(
      "p",
      { class: "review-form muted" },
      h("a", { href: `#${link("/login", { next: `/product/${product.id}` })}` }, "Log in"),
      " to write a review.",
    );
  }
  const ratingSelect = h(
    "select",
    { id: "review-rating", name: "rating", required: true },
    h("option", { value: "" }, "Choose a rating"),
    [5, 4, 3, 2, 1].map((value) => h("option", { value: String(value) }, `${value} ${value === 1 ? "star" : "stars"}`)),
  );
  const comment = h("textarea", { id: "review-comment", name: "comment", maxlength: "5000", rows: "4" });
  const submit = h("button", { type: "submit", class: "btn btn-primary" }, "Post review");
  const form = h(
    "form",
    { class: "review-form panel", "aria-labelledby": "review-form-heading" },
    h("h3", { id: "review-form-heading" }, "Write a review"),
    labelled(ratingSelect, "Rating"),
    labelled(comment, "Your review"),
    submit,
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    busy(submit, async () => {
      try {
        await request(`/api/products/${product.id}/reviews/`, {
          method: "POST",
          auth: true,
          body: { rating: Number(ratingSelect.value), comment: comment.value.trim() },
        });
      } catch (error) {
        showError(error);
        return;
      }
      if (!ctx.active) return;
      form.replaceWith(h("p", { class: "notice review-form" }, "Thank you: your review is posted."));
      await onPosted().catch(showError);
    });
  });
  return form;
}
