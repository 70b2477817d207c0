// Log in and register. Both end the same way: the guest cart goes into the account's cart, the
// action the login was asked for runs (add to wishlist), and the shopper is taken where they
// were going (checkout continues at the checkout page).

import { isLoggedIn, login, register } from "../api.js";
import { mergeGuestCart } from "../cart.js";
import { busy, h } from "../dom.js";
import { showError, toast } from "../notices.js";
import { link, navigate, takeAfterLogin } from "../router.js";

/** Only a path of this page ("/checkout"), never a full address someone put in the link. */
function safeNext(query) {
  const next = query.get("next") || "/";
  return next.startsWith("/") && !next.startsWith("//") ? next : "/";
}

function field(id, label, attributes, hint = null) {
  const input = h("input", { id, name: id, required: true, ...attributes, "aria-describedby": hint ? `${id}-hint` : null });
  return h(
    "div",
    { class: "field" },
    h("label", { for: id }, label),
    input,
    hint ? h("p", { class: "hint", id: `${id}-hint` }, hint) : null,
  );
}

async function afterLogin(next) {
  let merged = false;
  try {
    merged = await mergeGuestCart();
  } catch (error) {
    showError(error);
  }
  const action = takeAfterLogin(next);
  navigate(next, { replace: true });
  if (merged && next === "/checkout") toast("Your cart also holds what you left in it last time.");
  if (action) {
    try {
      await action();
    } catch (error) {
      showError(error);
    }
  }
}

function lead(next) {
  if (next === "/checkout") return "Log in to check out. Your cart comes with you.";
  return "Welcome back.";
}

export async function loginView(root, ctx) {
  const next = safeNext(ctx.query);
  document.title = "Log in · Shop";
  if (isLoggedIn()) {
    navigate(next, { replace: true });
    return;
  }
  const submit = h("button", { type: "submit", class: "btn btn-primary btn-block" }, "Log in");
  const form = h(
    "form",
    { class: "panel stack", novalidate: false },
    field("username", "Username", { type: "text", autocomplete: "username", autocapitalize: "none", spellcheck: "false", maxlength: "254" }, "Your username or your email."),
    field("password", "Password", { type: "password", autocomplete: "current-password", maxlength: "1024" }),
    submit,
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    busy(submit, async () => {
      try {
        await login(form.elements.username.value.trim(), form.elements.password.value);
      } catch (error) {
        showError(error);
        form.elements.password.select();
        return;
      }
      await afterLogin(next);
    });
  });
  root.append(
    h(
      "div",
      { class: "auth" },
      h("h1", {}, "Log in"),
      h("p", { class: "lead" }, lead(next)),
      form,
      h("p", { class: "switch" }, "New here? ", h("a", { href: `#${link("/register", { next: next === "/" ? null : next })}` }, "Create an account")),
    ),
  );
}

export async function registerView(root, ctx) {
  const next = safeNext(ctx.query);
  document.title = "Create an account · Shop";
  if (isLoggedIn()) {
    navigate(next, { replace: true });
    return;
  }
  const submit = h("button", { type: "submit", class: "btn btn-primary btn-block" }, "Register");
  const form = h(
    "form",
    { class: "panel stack" },
    field("username", "Username", { type: "text", autocomplete: "username", autocapitalize: "none", spellcheck: "false", maxlength: "80" }),
    field("email", "Email", { type: "email", autocomplete: "email", maxlength: "254" }),
    field("password", "Password", { type: "password", autocomplete: "new-password", minlength: "8", maxlength: "1024" }, "At least 8 characters."),
    submit,
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    busy(submit, async () => {
      try {
        await register({
          username: form.elements.username.value.trim(),
          email: form.elements.email.value.trim(),
          password: form.elements.password.value,
        });
      } catch (error) {
        showError(error);
        return;
      }
      toast("Welcome! Your account is ready.");
      await afterLogin(next);
    });
  });
  root.append(
    h(
      "div",
      { class: "auth" },
      h("h1", {}, "Create an account"),
      h("p", { class: "lead" }, "An account keeps your cart, your wishlist and your orders."),
      form,
      h("p", { class: "switch" }, "Already have an account? ", h("a", { href: `#${link("/login", { next: next === "/" ? null : next })}` }, "Log in")),
    ),
  );
}
