// Order history: the shopper's orders, newest first, a page at a time, with their shipping and total.

import { pagination, request } from "../api.js";
import { dateTime, emptyState, h, money, orderShipping, statusBadge } from "../dom.js";
import { link } from "../router.js";

const PAGE_SIZE = 10;

export async function ordersView(root, ctx) {
  document.title = "Your orders · Shop";
  const page = Math.max(1, Number.parseInt(ctx.query.get("page") ?? "1", 10) || 1);
  const { data: orders, headers } = await request(`/api/orders/?page=${page}&page_size=${PAGE_SIZE}`, { auth: true });
  if (!ctx.active) return;
  const meta = pagination(headers);
  root.append(h("div", { class: "page-head" }, h("h1", {}, "Your orders"), meta.total ? h("p", { class: "muted" }, meta.total === 1 ? "1 order" : `${meta.total} orders`) : null));
  if (!orders.length) {
    root.append(
      emptyState(page > 1 ? "No orders on this page" : "No orders yet", "What you order shows up here, with its status.", { href: "#/", label: "Start shopping" }),
    );
    return;
  }
  root.append(
    h(
      "ul",
      { class: "orders" },
      orders.map((order) => {
        const units = (order.items ?? []).reduce((sum, item) => sum + item.quantity, 0);
        const names = (order.items ?? []).map((item) => item.product_name).filter(Boolean);
        const summary = names.length > 2 ? `${names.slice(0, 2).join(", ")} and ${names.length - 2} more` : names.join(", ");
        const shipping = orderShipping(order);
        return h(
          "li",
          { class: "order-row" },
          h(
            "div",
            {},
            h("a", { href: `#/orders/${order.id}` }, `Order #${order.id}`),
            h("p", { class: "muted small" }, `${dateTime(order.created_at)} · ${units === 1 ? "1 item" : `${units} items`}${summary ? ` · ${summary}` : ""}`),
            shipping ? h("p", { class: "muted small" }, `Shipping: ${shipping}`) : null,
          ),
          statusBadge(order.order_status),
          h("p", { class: "order-total price" }, money(order.total_amount)),
        );
      }),
    ),
  );
  if ((meta.total_pages ?? 1) > 1) {
    root.append(
      h(
        "nav",
        { class: "pagination", "aria-label": "Pages" },
        meta.previous_page ? h("a", { class: "btn btn-small", rel: "prev", href: `#${link("/orders", { page: meta.previous_page })}` }, "← Newer") : null,
        h("span", { class: "muted", "aria-current": "page" }, `Page ${meta.page ?? page} of ${meta.total_pages}`),
        meta.next_page ? h("a", { class: "btn btn-small", rel: "next", href: `#${link("/orders", { page: meta.next_page })}` }, "Older →") : null,
      ),
    );
  }
}
