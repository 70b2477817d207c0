// The page's one error region (role="alert") and its short confirmations (a polite live region
// that stays in the page, so a screen reader hears what is put in it).

import { h } from "./dom.js";

const alertRegion = () => document.querySelector("[data-alert]");
const toastRegion = () => document.querySelector("[data-toast]");
let toastTimer = 0;

/** Show an error: an ApiError's message is already a sentence for a person. */
export function showError(error) {
  const region = alertRegion();
  const message = typeof error === "string" ? error : error?.message || "Something went wrong.";
  if (typeof error !== "string" && !(error && "status" in error)) console.error(error);
  region.textContent = message;
  region.hidden = false;
}

/** Empty the alert; ``only``: only if it still shows that message (another may have come since). */
export function clearError(only = null) {
  const region = alertRegion();
  if (only !== null && region.textContent !== only) return;
  region.hidden = true;
  region.textContent = "";
}

/** A short confirmation at the bottom of the screen, with an optional link. */
export function toast(message, link = null) {
  const region = toastRegion();
  region.replaceChildren(
    h("div", { class: "toast" }, h("span", {}, message), link ? h("a", { href: link.href }, link.text) : null),
  );
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => region.replaceChildren(), 4000);
}
