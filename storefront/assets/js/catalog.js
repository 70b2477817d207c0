// The catalog as the pages need it: the category tree, product pages of the list, and single
// products (kept for a minute, so a cart or a wishlist of many lines asks once per product).

import { pagination, request } from "./api.js";

const PRODUCT_TTL_MS = 60_000;
const products = new Map(); // id -> {at, promise}
let categories = null; // {at, promise}

export function getCategories() {
  if (!categories || Date.now() - categories.at > 5 * 60_000) {
    const promise = request("/api/categories/").then(({ data }) => data);
    promise.catch(() => {
      categories = null;
    });
    categories = { at: Date.now(), promise };
  }
  return categories.promise;
}

/** The tree: {byId, children(parentId) -> categories sorted by name, path(id) -> [root..id]}. */
export function categoryTree(list) {
  const byId = new Map(list.map((category) => [category.id, category]));
  const kids = new Map();
  for (const category of list) {
    const parent = category.parent_id && byId.has(category.parent_id) ? category.parent_id : null;
    if (!kids.has(parent)) kids.set(parent, []);
    kids.get(parent).push(category);
  }
  for (const group of kids.values()) group.sort((a, b) => a.name.localeCompare(b.name));
  return {
    byId,
    children: (parentId) => kids.get(parentId ?? null) ?? [],
    path(id) {
      const trail = [];
      const seen = new Set();
      for (let node = byId.get(id); node && !seen.has(node.id); node = byId.get(node.parent_id)) {
        seen.add(node.id);
        trail.unshift(node);
      }
      return trail;
    },
  };
}

/** One page of products: {items, meta} (meta is the X-Pagination header). */
export async function listProducts(filters) {
  const query = new URLSearchParams();
  for (const [key, value] of Object.entries(filters)) {
    if (value !== undefined && value !== null && value !== "") query.set(key, value);
  }
  const { data, headers } = await request(`/api/products/?${query}`);
  for (const product of data) remember(product);
  return { items: data, meta: pagination(headers) };
}

function remember(product) {
  products.set(product.id, { at: Date.now(), promise: Promise.resolve(product) });
}

/** A product; ``fresh``: ask the server even if it was read a moment ago. */
export function getProduct(id, { fresh = false } = {}) {
  const key = Number(id);
  const known = products.get(key);
  if (!fresh && known && Date.now() - known.at < PRODUCT_TTL_MS) return known.promise;
  const promise = request(`/api/products/${key}/`).then(({ data }) => data);
  products.set(key, { at: Date.now(), promise });
  promise.catch(() => products.delete(key));
  return promise;
}

/** A product, or null when it no longer exists (a line of an old cart). */
export async function findProduct(id) {
  try {
    return await getProduct(id);
  } catch (error) {
    if (error?.status === 404) return null;
    throw error;
  }
}
