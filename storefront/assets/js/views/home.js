// Home: the category tree, filters, sort, the product grid and its pages (X-Pagination).

import { categoryTree, getCategories, listProducts } from "../catalog.js";
import { emptyState, h, labelled, money, rating, stockBadge, thumb } from "../dom.js";
import { showError } from "../notices.js";
import { link, navigate } from "../router.js";

const PAGE_SIZE = 12;
const SORTS = [
  ["", "Featured"],
  ["-created_at", "Newest"],
  ["created_at", "Oldest"],
  ["price", "Price: low to high"],
  ["-price", "Price: high to low"],
  ["name", "Name: A to Z"],
  ["-name", "Name: Z to A"],
  ["-rating", "Top rated"],
];
const FILTER_KEYS = ["q", "category", "min_price", "max_price", "in_stock", "sort", "page"];

function filtersOf(query) {
  const filters = Object.fromEntries(FILTER_KEYS.map((key) => [key, query.get(key) ?? ""]));
  if (filters.in_stock !== "true") filters.in_stock = "";
  if (!SORTS.some(([value]) => value === filters.sort)) filters.sort = "";
  return filters;
}

const pageLink = (filters, changes) => link("/", { ...filters, ...changes });

export async function homeView(root, ctx) {
  const filters = filtersOf(ctx.query);
  const grid = h("div", { class: "grid" }, Array.from({ length: 8 }, () => h("div", { class: "card skeleton" })));
  const heading = h("h1", { id: "results-heading" }, "All products");
  const count = h("p", { class: "count muted" }, "Loading products…");
  const pager = h("nav", { class: "pagination", "aria-label": "Pages" });
  const sidebar = h("aside", { class: "sidebar" });
  const sort = h(
    "select",
    { id: "sort", name: "sort" },
    SORTS.map(([value, label]) => h("option", { value, selected: value === filters.sort }, label)),
  );
  // Focus stays on the list box: a keyboard user may go on choosing with the arrow keys.
  sort.addEventListener("change", () =>
    navigate(pageLink(filters, { sort: sort.value, page: "" }), { focus: "#sort" }),
  );

  root.append(
    h(
      "div",
      { class: "home" },
      sidebar,
      h(
        "section",
        { class: "results", "aria-labelledby": "results-heading" },
        h(
          "div",
          { class: "toolbar" },
          h("div", {}, heading, count),
          h("div", { class: "sort" }, h("label", { for: "sort" }, "Sort by"), sort),
        ),
        grid,
        pager,
      ),
    ),
  );

  const [categoriesRead, pageRead] = await Promise.allSettled([
    getCategories(),
    listProducts({
      q: filters.q,
      category: filters.category,
      min_price: filters.min_price,
      max_price: filters.max_price,
      in_stock: filters.in_stock,
      sort: filters.sort,
      page: filters.page || 1,
      page_size: PAGE_SIZE,
    }),
  ]);
  if (categoriesRead.status === "rejected") throw categoriesRead.reason;
  const categories = categoriesRead.value;
  const page = pageRead.value;
  if (pageRead.status === "rejected") {
    const error = pageRead.reason;
    // A filter the API refuses (422): the message, and the filters drawn so it can be fixed.
    if (!ctx.active) return;
    showError(error);
    sidebar.append(drawSidebar(categoryTree(categories), filters));
    count.textContent = "";
    grid.replaceWith(
      emptyState("No products to show", "The shop could not list products for these filters.", { href: "#/", label: "Show all products", primary: false }),
    );
    return;
  }
  if (!ctx.active) return;
  const tree = categoryTree(categories);
  const category = tree.byId.get(Number(filters.category));

  heading.textContent = filters.q
    ? `Results for “${filters.q}”${category ? ` in ${category.name}` : ""}`
    : (category?.name ?? "All products");
  document.title = `${heading.textContent} · Shop`;
  const total = page.meta.total ?? page.items.length;
  count.textContent = total === 1 ? "1 product" : `${total} products`;
  sidebar.append(drawSidebar(tree, filters));

  grid.replaceChildren(...page.items.map((product) => productCard(product, tree)));
  if (!page.items.length) {
    grid.replaceWith(
      emptyState("No products found", "Try another search, or fewer filters.", { href: "#/", label: "Show all products", primary: false }),
    );
  }
  drawPager(pager, page.meta, filters);
}

export function productCard(product, tree) {
  const category = tree?.byId.get(product.category_id);
  return h(
    "article",
    { class: "card" },
    thumb(product),
    h(
      "div",
      { class: "card-body" },
      category ? h("p", { class: "card-category" }, category.name) : null,
      h("h2", { class: "card-title" }, h("a", { href: `#/product/${product.id}` }, product.name)),
      rating(product.rating_avg, product.rating_count),
      h(
        "div",
        { class: "card-foot" },
        h("span", { class: "price" }, money(product.price)),
        stockBadge(product.stock_quantity),
      ),
    ),
  );
}

function drawSidebar(tree, filters) {
  const selected = Number(filters.category) || null;
  const open = new Set(tree.path(selected).map((category) => category.id));

  // Roots always; below them only the branch that leads to the chosen category, and its children.
  const branch = (parentId) => {
    const children = tree.children(parentId);
    if (!children.length) return null;
    return h(
      "ul",
      {},
      children.map((category) =>
        h(
          "li",
          {},
          h(
            "a",
            {
              href: `#${pageLink(filters, { category: category.id, page: "" })}`,
              "aria-current": category.id === selected ? "true" : null,
            },
            category.name,
          ),
          open.has(category.id) ? branch(category.id) : null,
        ),
      ),
    );
  };
  const all = h(
    "a",
    { href: `#${pageLink(filters, { category: "", page: "" })}`, "aria-current": selected ? null : "true" },
    "All categories",
  );
  const nav = h(
    "nav",
    { "aria-labelledby": "categories-heading" },
    h("h2", { id: "categories-heading" }, "Categories"),
    h("ul", { class: "tree" }, h("li", {}, all, branch(null))),
  );

  const minPrice = h("input", {
    type: "number",
    id: "min-price",
    name: "min_price",
    min: "0",
    step: "0.01",
    inputmode: "decimal",
    value: filters.min_price,
  });
  const maxPrice = h("input", {
    type: "number",
    id: "max-price",
    name: "max_price",
    min: "0",
    step: "0.01",
    inputmode: "decimal",
    value: filters.max_price,
  });
  const inStock = h("input", { type: "checkbox", id: "in-stock", name: "in_stock", checked: !!filters.in_stock });
  const form = h(
    "form",
    { class: "filters", "aria-labelledby": "filters-heading" },
    h("h2", { id: "filters-heading" }, "Filters"),
    h(
      "div",
      { class: "price-range" },
      labelled(minPrice, "Min price"),
      labelled(maxPrice, "Max price"),
    ),
    h("div", { class: "field" }, h("label", { class: "check", for: "in-stock" }, inStock, "In stock only")),
    h(
      "div",
      { class: "actions" },
      h("button", { type: "submit", class: "btn btn-primary btn-small" }, "Apply filters"),
      h("a", { href: `#${link("/", { q: filters.q, sort: filters.sort })}` }, "Clear"),
    ),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    if (minPrice.value && maxPrice.value && Number(minPrice.value) > Number(maxPrice.value)) {
      showError("Min price: it is above the max price.");
      minPrice.focus();
      return;
    }
    navigate(
      pageLink(filters, {
        min_price: minPrice.value,
        max_price: maxPrice.value,
        in_stock: inStock.checked ? "true" : "",
        page: "",
      }),
    );
  });

  const details = h(
    "details",
    { class: "panel" },
    h("summary", {}, "Categories and filters"),
    h("div", { class: "sidebar-body" }, nav, form),
  );
  // Open beside the grid on a wide screen; folded above it on a phone.
  details.open = window.matchMedia("(min-width: 861px)").matches;
  return details;
}

function drawPager(pager, meta, filters) {
  const pages = meta.total_pages ?? 1;
  if (pages <= 1) return;
  const current = meta.page ?? Number(filters.page || 1);
  const previous = meta.previous_page;
  const next = meta.next_page;
  pager.append(
    previous
      ? h("a", { class: "btn btn-small", href: `#${pageLink(filters, { page: previous })}`, rel: "prev" }, "← Previous")
      : null,
    h("span", { class: "muted", "aria-current": "page" }, `Page ${current} of ${pages}`),
    next
      ? h("a", { class: "btn btn-small", href: `#${pageLink(filters, { page: next })}`, rel: "next" }, "Next →")
      : null,
  );
}
