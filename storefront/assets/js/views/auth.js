// Log in and register. Both end the same way: the guest cart goes into the account's cart, the
// action the login was asked for runs (add to wishlist), and the shopper is taken where they
// were going (checkout continues at the checkout page).

import { isLoggedIn, login, register } from "../api.js";
import { mergeGuestCart } from "../cart.js";
import { busy, h, labelled } from "../dom.js";
import { showError, toast } from "../notices.js";
import { link, navigate, takeAfterLogin } from "../router.js";

/** Only a path of this page ("/checkout"), never a full address someone put in the link. */
function safeNext(query) {
  const next = query.get("next") || "/";
  return next.startsWith("/") && !next.startsWith("//") ? next : "/";
}

function field(id, label, attributes, hint = null) {
  return labelled(h("input", { id, name: id, required: true, ...attributes }), label, hint);
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

/**
 * The page both views share: a heading, a sentence, the form (its fields, one button), and a
 * link to the other page with the same ``next``. ``send(fields)`` logs in; throwing shows the
 * error and keeps the shopper here.
 */
function authPage(root, ctx, { title, lead: sentence, fields, button, send, onError, other }) {
  const next = safeNext(ctx.query);
  document.title = `${title} · Shop`;
  if (isLoggedIn()) {
    navigate(next, { replace: true });
    return;
  }
  const submit = h("button", { type: "submit", class: "btn btn-primary btn-block" }, button);
  const form = h("form", { class: "panel stack" }, fields, submit);
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    busy(submit, async () => {
      try {
        await send(form.elements);
      } catch (error) {
        showError(error);
        onError?.(form.elements);
        return;
      }
      await afterLogin(next);
    });
  });
  const otherLink = h("a", { href: `#${link(other.path, { next: next === "/" ? null : next })}` }, other.label);
  root.append(
    h(
      "div",
      { class: "auth" },
      h("h1", {}, title),
      h("p", { class: "lead" }, typeof sentence === "function" ? sentence(next) : sentence),
      form,
      h("p", { class: "switch" }, other.question, " ", otherLink),
    ),
  );
}

export async function loginView(root, ctx) {
  authPage(root, ctx, {
    title: "Log in",
    lead,
    fields: [
      field("username", "Username", { type: "text", autocomplete: "username", autocapitalize: "none", spellcheck: "false", maxlength: "254" }, "Your username or your email."),
      field("password", "Password", { type: "password", autocomplete: "current-password", maxlength: "1024" }),
    ],
    button: "Log in",
    send: (fields) => login(fields.username.value.trim(), fields.password.value),
    onError: (fields) => fields.password.select(),
    other: { question: "New here?", path: "/register", label: "Create an account" },
  });
}

export async function registerView(root, ctx) {
  authPage(root, ctx, {
    title: "Create an account",
    lead: "An account keeps your cart, your wishlist and your orders.",
    fields: [
      field("username", "Username", { type: "text", autocomplete: "username", autocapitalize: "none", spellcheck: "false", maxlength: "80" }),
      field("email", "Email", { type: "email", autocomplete: "email", maxlength: "254" }),
      field("password", "Password", { type: "password", autocomplete: "new-password", minlength: "8", maxlength: "1024" }, "At least 8 characters."),
    ],
    button: "Register",
    async send(fields) {
      await register({
        username: fields.username.value.trim(),
        email: fields.email.value.trim(),
        password: fields.password.value,
      });
      toast("Welcome! Your account is ready.");
    },
    other: { question: "Already have an account?", path: "/login", label: "Log in" },
  });
}
