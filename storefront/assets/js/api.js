// The public API at /api: one fetch wrapper, the login's tokens, and every error as a sentence.
//
// The tokens live in this module only (never localStorage, sessionStorage or a cookie): a script
// injected into the page later cannot read them back from storage, and a reload logs out.
// An authenticated call answered 401 refreshes once (the refresh token is rotated: both new
// tokens are kept) and is sent again; when the refresh fails the login is over here too.

const NETWORK_MESSAGE = "Could not reach the shop. Check your connection and try again.";
const EXPIRED_MESSAGE = "Your session has ended. Please log in again.";

/** The login: {access, refresh, user, refreshing}; null when logged out. */
let session = null;
const listeners = new Set();

export class ApiError extends Error {
  constructor(message, { status = 0, problem = null, retryAfter = null } = {}) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.problem = problem;
    this.retryAfter = retryAfter;
  }
}

/** ``listener(reason)`` on every change of login: "login", "logout" or "expired". */
export function onSessionChange(listener) {
  listeners.add(listener);
  return () => listeners.delete(listener);
}

function changed(reason) {
  for (const listener of listeners) listener(reason);
}

export const isLoggedIn = () => session !== null;
export const currentUser = () => session?.user ?? null;

// -- errors ------------------------------------------------------------------------------------

/** Seconds from a Retry-After header (delta-seconds or an HTTP date), or null. */
export function retryAfterSeconds(value) {
  if (!value) return null;
  const text = value.trim();
  if (/^\d+$/.test(text)) return Number(text);
  const when = Date.parse(text);
  return Number.isNaN(when) ? null : Math.max(1, Math.ceil((when - Date.now()) / 1000));
}

function fieldLabel(name) {
  const words = name.replace(/_/g, " ");
  return words.charAt(0).toUpperCase() + words.slice(1);
}

function fieldMessages(errors) {
  if (!errors || typeof errors !== "object") return "";
  return Object.entries(errors)
    .map(([field, messages]) => {
      const text = [].concat(messages).flat(Infinity).filter((m) => typeof m === "string").join(" ");
      return field === "_schema" ? text : `${fieldLabel(field)}: ${text}`;
    })
    .filter(Boolean)
    .join(" ");
}

/** The human message of an error answer (RFC 9457 problem+json, or anything else). */
export function problemMessage(status, problem, headers) {
  const retryAfter = retryAfterSeconds(headers?.get("Retry-After"));
  if (status === 429) {
    return retryAfter === null
      ? "Too many requests; try again in a moment."
      : `Too many requests; try again in ${retryAfter} s.`;
  }
  const detail = typeof problem?.detail === "string" ? problem.detail : "";
  if (status === 503) {
    const wait = retryAfter === null ? "in a moment" : `in ${retryAfter} s`;
    return `${detail || "The shop is briefly unavailable."} Please try again ${wait}.`;
  }
  const fields = fieldMessages(problem?.errors);
  if (detail) return fields ? `${detail} ${fields}` : detail;
  return problem?.title || `The request failed (HTTP ${status}).`;
}

async function errorOf(response) {
  let problem = null;
  try {
    const text = await response.text();
    problem = text ? JSON.parse(text) : null;
  } catch {
    problem = null; // not JSON: a proxy's page; the status still says what happened
  }
  return new ApiError(problemMessage(response.status, problem, response.headers), {
    status: response.status,
    problem,
    retryAfter: retryAfterSeconds(response.headers.get("Retry-After")),
  });
}

// -- sending -----------------------------------------------------------------------------------

async function send(path, init) {
  try {
    return await fetch(path, init);
  } catch (error) {
    if (error?.name === "AbortError") throw error;
    throw new ApiError(NETWORK_MESSAGE, { status: 0 });
  }
}

function withBearer(init, token) {
  return { ...init, headers: { ...(init.headers ?? {}), Authorization: `Bearer ${token}` } };
}

/** End ``login`` (only if it is still the current one: a newer login is left alone). */
function endSession(reason, login = session) {
  if (!session || session !== login) return;
  session = null;
  changed(reason);
}

/**
 * Swap ``login``'s refresh token for new tokens, once for every call of that login that saw
 * the same 401 (the refresh token is rotated: a second refresh with it would be refused, and
 * the API would take it as a stolen token and revoke the login).
 */
function refreshTokens(login, usedAccessToken) {
  if (login.access !== usedAccessToken) return Promise.resolve(); // refreshed meanwhile
  if (!login.refreshing) {
    login.refreshing = (async () => {
      const response = await send("/api/auth/refresh/", {
        method: "POST",
        headers: { Accept: "application/json", Authorization: `Bearer ${login.refresh}` },
        cache: "no-store",
      });
      if (!response.ok) throw await errorOf(response);
      const tokens = await response.json();
      login.access = tokens.access_token;
      login.refresh = tokens.refresh_token; // rotated: the old one is spent
    })().finally(() => {
      login.refreshing = null;
    });
  }
  return login.refreshing;
}

/**
 * ``fetch`` with the login's access token; a 401 refreshes the tokens once and sends again. The
 * response is returned whatever its status (the event streams read it themselves).
 */
export async function authorizedFetch(path, init = {}, { onExpiry = "expired" } = {}) {
  const login = session; // this call belongs to this login, whatever happens meanwhile
  if (!login) throw new ApiError("Please log in first.", { status: 401 });
  const used = login.access;
  const first = await send(path, withBearer(init, used));
  if (first.status !== 401) return first;
  if (session !== login) throw new ApiError(EXPIRED_MESSAGE, { status: 401 }); // logged out meanwhile
  try {
    await refreshTokens(login, used);
  } catch (error) {
    if (error instanceof ApiError && error.status === 0) throw error; // offline: still logged in
    endSession(onExpiry, login);
    throw new ApiError(EXPIRED_MESSAGE, { status: 401 });
  }
  if (session !== login) throw new ApiError(EXPIRED_MESSAGE, { status: 401 });
  const second = await send(path, withBearer(init, login.access));
  if (second.status === 401) {
    endSession(onExpiry, login);
    throw new ApiError(EXPIRED_MESSAGE, { status: 401 });
  }
  return second;
}

/**
 * A JSON call: resolves to {data, headers, status}, rejects with an ApiError whose message can
 * be shown as it is. ``auth``: send the access token (and refresh it on a 401).
 */
export async function request(path, { method = "GET", body, auth = false, headers = {}, signal } = {}) {
  const init = { method, headers: { Accept: "application/json", ...headers }, signal };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  if (auth) init.cache = "no-store"; // one user's data: never from the browser's cache
  const response = auth ? await authorizedFetch(path, init) : await send(path, init);
  if (!response.ok) throw await errorOf(response);
  const type = response.headers.get("Content-Type") || "";
  const data = response.status !== 204 && type.includes("json") ? await response.json() : null;
  return { data, headers: response.headers, status: response.status };
}

/** The X-Pagination header, parsed ({} when absent). */
export function pagination(headers) {
  try {
    return JSON.parse(headers.get("X-Pagination") || "{}");
  } catch {
    return {};
  }
}

// -- the login ---------------------------------------------------------------------------------

export async function login(username, password) {
  const { data: tokens } = await request("/api/auth/login/", {
    method: "POST",
    body: { username, password },
  });
  const candidate = { access: tokens.access_token, refresh: tokens.refresh_token, user: null, refreshing: null };
  const me = await send("/api/users/me/", {
    headers: { Accept: "application/json", Authorization: `Bearer ${candidate.access}` },
    cache: "no-store",
  });
  if (!me.ok) throw await errorOf(me);
  candidate.user = await me.json();
  session = candidate;
  changed("login");
  return candidate.user;
}

export async function register({ username, email, password }) {
  await request("/api/auth/register/", { method: "POST", body: { username, email, password } });
  return login(username, password);
}

/** Revoke the login on the server (best effort), then forget it here whatever the answer. */
export async function logout() {
  if (!session) return;
  try {
    await authorizedFetch("/api/auth/logout/", { method: "POST", cache: "no-store" }, { onExpiry: "logout" });
  } catch {
    // Offline or already revoked: the tokens are dropped below all the same.
  }
  endSession("logout");
}
