// The cart: the server's (GET /api/cart/) once logged in; before that a guest cart kept in this
// page's memory, added to the server's cart at login. Checkout and payment send an
// Idempotency-Key made once per attempt, so a retry (or a second click) never orders twice.

import { ApiError, isLoggedIn, request } from "./api.js";
import { findProduct } from "./catalog.js";
import { cents, fromCents } from "./dom.js";

/**
 * A random UUID (version 4) for an Idempotency-Key. ``crypto.randomUUID`` exists only in secure
 * contexts (HTTPS, localhost); ``getRandomValues`` everywhere, so a shop reached over plain HTTP
 * on a LAN address can still check out.
 */
export function newKey() {
  if (typeof crypto.randomUUID === "function") return crypto.randomUUID();
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  bytes[6] = (bytes[6] & 0x0f) | 0x40;
  bytes[8] = (bytes[8] & 0x3f) | 0x80;
  const hex = [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

const guest = new Map(); // product id -> quantity
const listeners = new Set();
let count = 0;
const checkoutKeys = new Map(); // request body -> key of the checkout attempt under way
const paymentKeys = new Map(); // "order id:token" -> key of the payment attempt under way

export function onCartCount(listener) {
  listeners.add(listener);
  listener(count);
  return () => listeners.delete(listener);
}

function setCount(value) {
  count = value;
  for (const listener of listeners) listener(count);
}

const units = (lines) => lines.reduce((sum, line) => sum + line.quantity, 0);

/**
 * The cart as the page shows it: {guest, lines: [{id, productId, quantity, unitPrice,
 * lineTotal, product}], total}. ``product`` is null for a product that no longer exists.
 */
export async function loadCart() {
  let lines;
  let total;
  if (isLoggedIn()) {
    const { data } = await request("/api/cart/", { auth: true });
    lines = data.items.map((item) => ({
      id: item.id,
      productId: item.product_id,
      quantity: item.quantity,
      unitPrice: item.unit_price,
      lineTotal: item.line_total,
    }));
    total = data.total_amount;
  } else {
    lines = [...guest].map(([productId, quantity]) => ({ id: productId, productId, quantity }));
  }
  const products = await Promise.all(lines.map((line) => findProduct(line.productId)));
  lines.forEach((line, i) => {
    line.product = products[i];
  });
  if (!isLoggedIn()) {
    for (const line of lines) {
      line.unitPrice = line.product?.price ?? "0.00";
      line.lineTotal = fromCents(cents(line.unitPrice) * line.quantity);
    }
    total = fromCents(lines.reduce((sum, line) => sum + cents(line.lineTotal), 0));
  }
  setCount(units(lines));
  return { guest: !isLoggedIn(), lines, total };
}

/** The count in the header, from the server once logged in. */
export async function refreshCount() {
  if (!isLoggedIn()) {
    setCount([...guest.values()].reduce((a, b) => a + b, 0));
    return;
  }
  try {
    const { data } = await request("/api/cart/", { auth: true });
    setCount(units(data.items));
  } catch {
    // The count is a hint; the cart page says what went wrong when it is opened.
  }
}

export async function addToCart(productId, quantity = 1) {
  checkoutKeys.clear(); // another cart: a checkout key kept from a lost answer must not replay
  if (isLoggedIn()) {
    await request("/api/cart/items/", {
      method: "POST",
      auth: true,
      body: { product_id: Number(productId), quantity },
    });
    await refreshCount();
  } else {
    guest.set(Number(productId), (guest.get(Number(productId)) ?? 0) + quantity);
    setCount(count + quantity);
  }
}

export async function setQuantity(line, quantity) {
  checkoutKeys.clear();
  if (isLoggedIn()) {
    await request(`/api/cart/items/${line.id}/`, { method: "PATCH", auth: true, body: { quantity } });
  } else {
    guest.set(line.productId, quantity);
  }
}

export async function removeLine(line) {
  checkoutKeys.clear();
  if (isLoggedIn()) await request(`/api/cart/items/${line.id}/`, { method: "DELETE", auth: true });
  else guest.delete(line.productId);
}

/**
 * At login: put the guest cart's lines into the server's cart (a product already there adds to
 * its quantity). Returns whether the server's cart held lines before (from an earlier visit).
 */
export async function mergeGuestCart() {
  checkoutKeys.clear();
  const { data } = await request("/api/cart/", { auth: true });
  const hadLines = data.items.length > 0;
  for (const [productId, quantity] of [...guest]) {
    try {
      await request("/api/cart/items/", {
        method: "POST",
        auth: true,
        body: { product_id: productId, quantity },
      });
    } catch (error) {
      if (error?.status !== 404) throw error; // a product gone meanwhile is left out
    }
    guest.delete(productId);
  }
  await refreshCount();
  return hadLines;
}

// A definite answer ends an attempt (a new key next time: the server keeps the first answer of
// a key, a refusal included); no answer, or "still being processed", keeps the key for a retry.
function attemptOver(error) {
  if (!(error instanceof ApiError)) return false;
  if (error.status === 0 || error.status === 429 || error.status >= 500) return false;
  return !(error.status === 409 && /Idempotency-Key/i.test(error.problem?.detail ?? ""));
}

/**
 * POST /api/orders/ (the whole cart); resolves to the order. ``shipping``: ``{to, method}``, a
 * zone code and "economy" or "express"; null for a shop without a shipping network.
 */
export async function placeOrder({ shippingAddress = "", shipping = null } = {}) {
  const body = {};
  if (shipping) body.shipping = { to: shipping.to, method: shipping.method };
  if (shippingAddress) body.shipping_address = shippingAddress;
  // Keyed by the body: the same key with another address or another shipping choice would be
  // refused (422). So another choice is another attempt with a key of its own, and going back to
  // the choice of an attempt whose answer was lost replays that attempt (the server may have
  // made that order).
  const attempt = JSON.stringify(body);
  const key = checkoutKeys.get(attempt) ?? newKey();
  checkoutKeys.set(attempt, key);
  try {
    const { data } = await request("/api/orders/", {
      method: "POST",
      auth: true,
      body,
      headers: { "Idempotency-Key": key },
    });
    checkoutKeys.clear();
    setCount(0);
    return data;
  } catch (error) {
    if (attemptOver(error)) checkoutKeys.delete(attempt);
    throw error;
  }
}

/** POST /api/orders/<id>/payments/; resolves to the (pending) payment. */
export async function pay(orderId, token) {
  // Keyed by the body too: the same key with another token would be refused (422).
  const attempt = `${orderId}:${token}`;
  const key = paymentKeys.get(attempt) ?? newKey();
  paymentKeys.set(attempt, key);
  try {
    const { data } = await request(`/api/orders/${orderId}/payments/`, {
      method: "POST",
      auth: true,
      body: { payment_method: "card", token },
      headers: { "Idempotency-Key": key },
    });
    paymentKeys.delete(attempt);
    return data;
  } catch (error) {
    if (attemptOver(error)) paymentKeys.delete(attempt);
    throw error;
  }
}

/** The order's payment failed: the next Pay is a new attempt, even with the same token. */
export function forgetPaymentKeys(orderId) {
  for (const attempt of [...paymentKeys.keys()]) {
    if (attempt.startsWith(`${orderId}:`)) paymentKeys.delete(attempt);
  }
}

/** After logout: the next shopper on this page starts with an empty cart. */
export function forgetCart() {
  guest.clear();
  checkoutKeys.clear();
  paymentKeys.clear();
  setCount(0);
}
