// Server-Sent Events read with fetch(), for the streams that need an Authorization header
// (EventSource cannot send one): a parser of the text/event-stream format, and a reader that
// reconnects after a dropped stream with Last-Event-ID so no event between the two is lost.

import { ApiError, authorizedFetch, problemMessage, retryAfterSeconds } from "./api.js";

/**
 * The event-stream format (WHATWG HTML, "Server-sent events"): lines end with CRLF, LF or CR;
 * ``field: value`` (one space after the colon dropped); a line starting with ":" is a comment
 * (the server's keep-alive); a blank line ends the event. ``id`` persists from one event to the
 * next, as the last event id sent back on reconnection.
 */
export class EventStreamParser {
  constructor(onEvent, lastEventId = "") {
    this.onEvent = onEvent;
    this.lastEventId = lastEventId;
    this.retry = null;
    this.buffer = "";
    this.reset();
  }

  reset() {
    this.type = "";
    this.data = [];
  }

  /** Feed decoded text as it arrives: any chunk boundary, even inside a line or a CRLF. */
  feed(text) {
    this.buffer += text;
    let start = 0;
    for (let i = 0; i < this.buffer.length; i++) {
      const char = this.buffer[i];
      if (char !== "\n" && char !== "\r") continue;
      if (char === "\r" && i + 1 === this.buffer.length) break; // a CRLF cut in two: wait
      this.line(this.buffer.slice(start, i));
      if (char === "\r" && this.buffer[i + 1] === "\n") i++;
      start = i + 1;
    }
    this.buffer = this.buffer.slice(start);
  }

  line(line) {
    if (line === "") {
      this.dispatch();
      return;
    }
    if (line.startsWith(":")) return;
    const colon = line.indexOf(":");
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "event") this.type = value;
    else if (field === "data") this.data.push(value);
    else if (field === "id" && !value.includes("\0")) this.lastEventId = value;
    else if (field === "retry" && /^\d+$/.test(value)) this.retry = Number(value);
  }

  dispatch() {
    if (this.data.length) {
      this.onEvent({ type: this.type || "message", data: this.data.join("\n"), id: this.lastEventId });
    }
    this.reset();
  }
}

const sleep = (ms, signal) =>
  new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener("abort", () => {
      clearTimeout(timer);
      resolve();
    });
  });

/**
 * Read ``path`` as an event stream with the login's token until ``close()`` is called.
 *
 * - ``onEvent({type, data, id})`` for each event;
 * - ``onState("open" | "reconnecting" | "closed")`` as the connection comes and goes;
 * - ``onFatal(error)`` when the server refuses the stream for good (403, 404, a login that
 *   ended): no retry then.
 *
 * A stream that ends or breaks is opened again after a pause (growing to 15 s, or the server's
 * ``retry``/Retry-After), sending ``Last-Event-ID`` so the server replays what was missed. A
 * stream silent for longer than ``staleAfterMs`` (the server sends a comment at least every
 * 15 s) is taken as dead and replaced. Returns ``{close}``.
 */
export function openEventStream(path, { onEvent, onState = () => {}, onFatal = () => {}, staleAfterMs = 45000 }) {
  const stop = new AbortController();
  let lastEventId = "";
  let failures = 0;
  let retryField = null; // the stream's own "retry:" reconnection time, kept
  let retryAfter = null; // a refusal's Retry-After, for the next attempt only

  async function readOnce() {
    const attempt = new AbortController();
    const abortAttempt = () => attempt.abort();
    stop.signal.addEventListener("abort", abortAttempt);
    let watchdog = 0;
    const arm = () => {
      clearTimeout(watchdog);
      watchdog = setTimeout(abortAttempt, staleAfterMs);
    };
    try {
      const headers = { Accept: "text/event-stream" };
      if (lastEventId) headers["Last-Event-ID"] = lastEventId;
      arm();
      const response = await authorizedFetch(path, { headers, cache: "no-store", signal: attempt.signal });
      if (!response.ok) {
        let problem = null;
        try {
          problem = await response.json();
        } catch {
          problem = null;
        }
        const message = problemMessage(response.status, problem, response.headers);
        const error = new ApiError(message, { status: response.status, problem });
        const transient = response.status === 429 || response.status >= 500;
        if (!transient) throw Object.assign(error, { fatal: true });
        retryAfter = (retryAfterSeconds(response.headers.get("Retry-After")) ?? 5) * 1000;
        return;
      }
      failures = 0;
      onState("open");
      const parser = new EventStreamParser((event) => {
        lastEventId = event.id;
        onEvent(event);
      }, lastEventId);
      const reader = response.body.getReader();
      const decoder = new TextDecoder();
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        arm();
        parser.feed(decoder.decode(value, { stream: true }));
        if (parser.retry !== null) retryField = parser.retry;
      }
    } finally {
      clearTimeout(watchdog);
      stop.signal.removeEventListener("abort", abortAttempt);
    }
  }

  (async () => {
    while (!stop.signal.aborted) {
      try {
        await readOnce();
      } catch (error) {
        if (stop.signal.aborted) break;
        if (error?.fatal || (error instanceof ApiError && error.status === 401)) {
          onState("closed");
          onFatal(error);
          return;
        }
        // A dropped connection, a stale stream, the network: try again below.
      }
      if (stop.signal.aborted) break;
      onState("reconnecting");
      failures += 1;
      const backoff = Math.min(15000, 500 * 2 ** Math.min(failures, 5));
      const firstTry = failures === 1 && retryField !== null;
      await sleep(retryAfter ?? (firstTry ? retryField : backoff), stop.signal);
      retryAfter = null;
    }
    onState("closed");
  })();

  return { close: () => stop.abort() };
}
