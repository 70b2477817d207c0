// Building the page: elements from data (text nodes only, never HTML strings from the API),
// and how money, dates, ratings, stock, shipping and statuses read to a person.

/** An element: h("a", {href: "#/", class: "x", onClick: fn}, "text", child, [more]). */
export function h(tag, props = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(props ?? {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "class") element.className = value;
    else if (name.startsWith("on") && typeof value === "function") {
      element.addEventListener(name.slice(2).toLowerCase(), value);
    } else if (value === true) element.setAttribute(name, "");
    else element.setAttribute(name, String(value));
  }
  append(element, children);
  return element;
}

function append(parent, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(parent, child);
    else parent.append(child instanceof Node ? child : String(child));
  }
}

const SVG = "http://www.w3.org/2000/svg";
const ICONS = {
  cart: ["M3 4h2l2.2 10.3A2 2 0 0 0 9.2 16H17a2 2 0 0 0 2-1.6L20.5 8H6", "M9.5 20h.01M17 20h.01"],
  heart: ["M12 20s-7-4.4-7-10a4 4 0 0 1 7-2.6A4 4 0 0 1 19 10c0 5.6-7 10-7 10Z"],
  lock: ["M6 11h12v9H6z", "M8.5 11V8a3.5 3.5 0 0 1 7 0v3"],
  trash: ["M4 7h16", "M9 7V4h6v3", "M6 7l1 13h10l1-13"],
  back: ["M15 5l-7 7 7 7"],
};

/** A decorative line icon (hidden from assistive technology: the button's text names it). */
export function icon(name) {
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("viewBox", "0 0 24 24");
  svg.setAttribute("aria-hidden", "true");
  svg.setAttribute("focusable", "false");
  for (const d of ICONS[name] ?? []) {
    const path = document.createElementNS(SVG, "path");
    path.setAttribute("d", d);
    svg.append(path);
  }
  return svg;
}

// Prices are strings with two decimals ("19.99"); the API names no currency.
const MONEY = new Intl.NumberFormat("en-US", { style: "currency", currency: "USD" });

export function money(amount) {
  const value = Number(amount);
  return Number.isFinite(value) ? MONEY.format(value) : String(amount ?? "");
}

/** Cents of a money string, for sums that must not drift (0.1 + 0.2). */
export function cents(amount) {
  return Math.round(Number(amount) * 100);
}

export function fromCents(value) {
  return (value / 100).toFixed(2);
}

const DATE = new Intl.DateTimeFormat("en-GB", { day: "numeric", month: "short", year: "numeric" });
const DATE_TIME = new Intl.DateTimeFormat("en-GB", {
  day: "numeric",
  month: "short",
  hour: "2-digit",
  minute: "2-digit",
});

export function date(iso) {
  const value = iso ? new Date(iso) : null;
  return value && !Number.isNaN(value.getTime()) ? DATE.format(value) : "";
}

export function dateTime(iso) {
  const value = iso ? new Date(iso) : null;
  return value && !Number.isNaN(value.getTime()) ? DATE_TIME.format(value) : "";
}

/** "★★★★☆" for the eye, "Rated 4.2 out of 5 from 12 reviews" for the ear. */
export function rating(avg, count) {
  if (!count) return h("p", { class: "rating" }, h("span", { class: "muted" }, "No reviews yet"));
  const value = Number(avg) || 0;
  const full = Math.round(value);
  const stars = "★".repeat(full) + "☆".repeat(5 - full);
  const reviews = count === 1 ? "1 review" : `${count} reviews`;
  return h(
    "p",
    { class: "rating" },
    h("span", { class: "stars", "aria-hidden": "true" }, stars),
    h("span", { "aria-hidden": "true" }, `${value.toFixed(1)} (${count})`),
    h("span", { class: "visually-hidden" }, `Rated ${value.toFixed(1)} out of 5 from ${reviews}`),
  );
}

export function stars(value) {
  const full = Math.max(0, Math.min(5, Math.round(Number(value) || 0)));
  return h(
    "span",
    { class: "stars", role: "img", "aria-label": `${full} out of 5 stars` },
    "★".repeat(full) + "☆".repeat(5 - full),
  );
}

export function stockText(quantity) {
  if (quantity <= 0) return "Out of stock";
  if (quantity < 5) return `Only ${quantity} left`;
  return `${quantity} in stock`;
}

export function stockBadge(quantity) {
  const level = quantity <= 0 ? "out" : quantity < 5 ? "low" : "in";
  return h("span", { class: `stock ${level}` }, stockText(quantity));
}

/**
 * A product picture (``image`` from a product's ``images``): its thumbnail or the full picture,
 * with the width and height attributes of that file, so the browser keeps its place (and
 * shape) before it has loaded and the page does not move.
 */
export function picture(image, alt, { full = false, lazy = true } = {}) {
  const small = !full && Boolean(image.thumbnail_url);
  const width = small ? image.thumbnail_width : image.width;
  const height = small ? image.thumbnail_height : image.height;
  return h("img", {
    src: small ? image.thumbnail_url : image.url,
    alt,
    width: width || null,
    height: height || null,
    loading: lazy ? "lazy" : null,
    decoding: "async",
  });
}

/**
 * The product's main picture (the thumbnail of its first image) in a box of fixed shape, or,
 * for a product without pictures, a neutral block of the same shape with its initials (drawn
 * by the stylesheet: no image is requested).
 */
export function thumb(product, size = "") {
  const image = product?.images?.[0];
  if (image) {
    return h("div", { class: ["thumb", size].filter(Boolean).join(" ") }, picture(image, product.name ?? ""));
  }
  const initials = String(product?.name ?? "?")
    .split(/\s+/)
    .filter(Boolean)
    .slice(0, 2)
    .map((word) => word[0].toUpperCase())
    .join("");
  const classes = ["thumb", "placeholder", size].filter(Boolean).join(" ");
  return h("div", { class: classes, "aria-hidden": "true" }, initials || "?");
}

const SHIPPING_METHODS = { economy: "Economy", express: "Express" };

/** "Economy", "Express" (a method the page does not know yet: its name, capitalised). */
export function shippingMethod(method) {
  const name = String(method ?? "");
  return SHIPPING_METHODS[name] ?? name.charAt(0).toUpperCase() + name.slice(1);
}

export function days(count) {
  return Number(count) === 1 ? "1 day" : `${count} days`;
}

/** "WH-NORTH → DE-EAST → PL": a route's zone codes, warehouse first. */
export function route(codes) {
  return (codes ?? []).join(" → ");
}

/** A quote's option as a shopper reads it: "Economy: $3.90, 5 days". */
export function shippingOption(option) {
  return `${shippingMethod(option.method)}: ${money(option.cost)}, ${days(option.days)}`;
}

/** An order's shipping, "Express, $5.90, WH-NORTH → DE-EAST → PL"; null without shipping. */
export function orderShipping(order) {
  if (!order?.shipping_method) return null;
  const path = route(order.shipping_route);
  return [shippingMethod(order.shipping_method), money(order.shipping_cost), path].filter(Boolean).join(", ");
}

export function statusBadge(status) {
  return h("span", { class: `status-badge status-${status}` }, status);
}

/** A button that shows it is working and cannot be pressed again until ``work`` settles. */
export async function busy(button, work) {
  button.disabled = true;
  button.setAttribute("aria-busy", "true");
  try {
    return await work();
  } finally {
    button.disabled = false;
    button.removeAttribute("aria-busy");
  }
}

/**
 * A form field: ``control`` (an input, select or textarea with an id) under its label, and a
 * hint below it that a screen reader reads with the control (``aria-describedby``).
 */
export function labelled(control, label, hint = null, fieldClass = "field") {
  const hintId = hint ? `${control.id}-hint` : null;
  if (hintId) control.setAttribute("aria-describedby", hintId);
  return h(
    "div",
    { class: fieldClass },
    h("label", { for: control.id }, label),
    control,
    hint ? h("p", { class: "hint", id: hintId }, hint) : null,
  );
}

/**
 * The "nothing here" panel: a heading (``level: "h1"`` when it is the page's own), a sentence,
 * and one way on (``action: {href, label, primary}``).
 */
export function emptyState(title, text, action, { level = "h2" } = {}) {
  return h(
    "div",
    { class: "empty" },
    h(level, {}, title),
    text ? h("p", {}, text) : null,
    action ? h("a", { class: action.primary === false ? "btn" : "btn btn-primary", href: action.href }, action.label) : null,
  );
}
