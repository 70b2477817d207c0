// Hash routing (#/product/12?x=1): the server serves one page, every view is drawn here. A view
// is ``async (root, ctx) => {...}``; what it opens (event streams) it hands to ``ctx.onLeave``.

import { isLoggedIn } from "./api.js";
import { emptyState, h } from "./dom.js";
import { clearError, showError } from "./notices.js";

const routes = [];
let main = null;
let leaving = [];
let rendered = 0;
let pendingAlert = null;
let pendingFocus = null;
let afterLogin = null; // {next, action}: what a login was asked for, and where it leads

/** ``pattern``: a path with ``:name`` parts ("/orders/:id"). ``auth``: logged-in shoppers only. */
export function route(pattern, view, { auth = false } = {}) {
  const names = [];
  const source = pattern.replace(/:(\w+)/g, (_, name) => {
    names.push(name);
    return "([^/]+)";
  });
  routes.push({ regex: new RegExp(`^${source}$`), names, view, auth });
}

export function currentLocation() {
  const raw = location.hash.slice(1) || "/";
  const [path, search = ""] = raw.split("?");
  return { raw, path, query: new URLSearchParams(search) };
}

/** "/?q=lamp&page=2" from a path and parameters (empty values left out). */
export function link(path, params = {}) {
  const query = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== "" && value !== false) query.set(key, value);
  }
  const search = query.toString();
  return search ? `${path}?${search}` : path;
}

/**
 * Go to a route; ``alert``: an error to show on arrival; ``replace``: no new history entry;
 * ``focus``: a selector of the new page to focus (else its heading, for a screen reader).
 */
export function navigate(path, { replace = false, alert = null, focus = null } = {}) {
  pendingAlert = alert;
  pendingFocus = focus;
  const hash = `#${path}`;
  if (location.hash === hash) render();
  else if (replace) {
    history.replaceState(null, "", hash);
    render();
  } else location.hash = hash;
}

/** Send the shopper to log in, then to ``next``; ``then`` runs once the login succeeds. */
export function loginThen(next, then = null) {
  afterLogin = then ? { next, action: then } : null;
  navigate(link("/login", { next }));
}

/** The action a login to ``next`` was asked for (once); none for a login that leads elsewhere. */
export function takeAfterLogin(next) {
  const wish = afterLogin;
  afterLogin = null;
  return wish && wish.next === next ? wish.action : null;
}

export function start(root) {
  main = root;
  window.addEventListener("hashchange", () => render());
  render();
}

export function rerender() {
  render();
}

async function render() {
  const here = currentLocation();
  if (!here.path.startsWith("/")) return; // an in-page anchor, not a route
  for (const leave of leaving.splice(0)) leave();
  const id = ++rendered;
  const first = id === 1;
  // A login abandoned for another page forgets what it was asked to do afterwards.
  if (here.path !== "/login" && here.path !== "/register") afterLogin = null;
  const focusAfter = pendingFocus;
  pendingFocus = null;
  clearError();
  if (pendingAlert) showError(pendingAlert);
  pendingAlert = null;

  let match = null;
  let params = {};
  for (const candidate of routes) {
    const found = here.path.match(candidate.regex);
    if (found) {
      match = candidate;
      try {
        params = Object.fromEntries(candidate.names.map((name, i) => [name, decodeURIComponent(found[i + 1])]));
      } catch {
        match = null; // "%E0": not an address of this shop
      }
      break;
    }
  }
  if (match?.auth && !isLoggedIn()) {
    navigate(link("/login", { next: here.raw }), { replace: true });
    return;
  }

  const root = h("div", { class: "view" });
  main.replaceChildren(root);
  markCurrentNav(here.path);
  if (!first) window.scrollTo(0, 0);
  const ctx = {
    params,
    query: here.query,
    path: here.path,
    raw: here.raw,
    get active() {
      return id === rendered;
    },
    onLeave(fn) {
      if (id === rendered) leaving.push(fn);
      else fn();
    },
  };
  root.setAttribute("aria-busy", "true");
  try {
    await (match ? match.view(root, ctx) : notFound(root));
  } catch (error) {
    if (ctx.active) {
      showError(error);
      if (!root.querySelector("h1")) root.append(h("h1", {}, "Something went wrong"));
    }
  } finally {
    root.removeAttribute("aria-busy");
  }
  // Moving focus to the new page's heading tells a screen reader the page changed (not on the
  // first load: the browser starts at the top of the document then).
  const wanted = focusAfter ? root.querySelector(focusAfter) : null;
  if (wanted && ctx.active) {
    wanted.focus();
    return;
  }
  const heading = root.querySelector("h1");
  if (!first && ctx.active && heading && !root.contains(document.activeElement)) {
    heading.tabIndex = -1;
    heading.focus({ preventScroll: true });
  }
}

function markCurrentNav(path) {
  for (const anchor of document.querySelectorAll(".site-nav a")) {
    const target = anchor.getAttribute("href").slice(1);
    if (path === target || path.startsWith(`${target}/`)) anchor.setAttribute("aria-current", "page");
    else anchor.removeAttribute("aria-current");
  }
}

function notFound(root) {
  document.title = "Not found · Shop";
  root.append(
    emptyState("Page not found", "There is nothing at this address.", { href: "#/", label: "Back to the shop" }, { level: "h1" }),
  );
}
