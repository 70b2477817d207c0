// The storefront: its routes, and the header every page shares (search, cart count, account).

import { currentUser, logout, onSessionChange } from "./api.js";
import { forgetCart, onCartCount, refreshCount } from "./cart.js";
import { h } from "./dom.js";
import { currentLocation, link, navigate, route, start } from "./router.js";
import { loginView, registerView } from "./views/auth.js";
import { cartView } from "./views/cart.js";
import { checkoutView } from "./views/checkout.js";
import { homeView } from "./views/home.js";
import { orderView } from "./views/order.js";
import { ordersView } from "./views/orders.js";
import { productView } from "./views/product.js";
import { wishlistView } from "./views/wishlist.js";

route("/", homeView);
route("/product/:id", productView);
route("/cart", cartView);
route("/checkout", checkoutView, { auth: true });
route("/wishlist", wishlistView, { auth: true });
route("/orders", ordersView, { auth: true });
route("/orders/:id", orderView, { auth: true });
route("/login", loginView);
route("/register", registerView);

const cartLink = document.querySelector("[data-cart-link]");
const cartBadge = document.querySelector("[data-cart-count]");
const account = document.querySelector("[data-account]");
const searchForm = document.querySelector("[data-search-form]");

onCartCount((count) => {
  cartLink.setAttribute("aria-label", `Cart (${count})`);
  cartBadge.textContent = String(count);
  cartBadge.hidden = count === 0;
});

function drawAccount() {
  const user = currentUser();
  if (!user) {
    const loginLink = h("a", { class: "btn btn-small btn-primary", href: "#/login" }, "Log in");
    loginLink.addEventListener("click", (event) => {
      // Back to this page after the login (not from the login or register page itself).
      const here = currentLocation();
      if (here.path === "/login" || here.path === "/register") return;
      event.preventDefault();
      navigate(link("/login", { next: here.raw === "/" ? null : here.raw }));
    });
    account.replaceChildren(loginLink);
    return;
  }
  const logoutButton = h("button", { type: "button", class: "btn btn-small" }, "Log out");
  logoutButton.addEventListener("click", async () => {
    logoutButton.disabled = true;
    await logout();
  });
  account.replaceChildren(h("span", { class: "account-name", title: user.username }, user.username), logoutButton);
}

onSessionChange((reason) => {
  drawAccount();
  if (reason === "login") refreshCount();
  if (reason === "logout") {
    forgetCart();
    navigate("/");
  }
  if (reason === "expired") {
    forgetCart();
    const here = currentLocation();
    const next = here.path === "/login" ? here.query.get("next") : here.raw;
    navigate(link("/login", { next }), { alert: "Your session has ended. Please log in again." });
  }
});

searchForm.addEventListener("submit", (event) => {
  event.preventDefault();
  const q = searchForm.elements.q.value.trim();
  const here = currentLocation();
  const sort = here.path === "/" ? here.query.get("sort") : null;
  navigate(link("/", { q, sort }));
});

function syncSearchBox() {
  const here = currentLocation();
  const box = searchForm.elements.q;
  if (document.activeElement !== box) box.value = here.path === "/" ? (here.query.get("q") ?? "") : "";
}
window.addEventListener("hashchange", syncSearchBox);

document.querySelector("[data-skip-link]").addEventListener("click", (event) => {
  event.preventDefault();
  document.getElementById("main").focus();
});

drawAccount();
syncSearchBox();
start(document.getElementById("main"));
