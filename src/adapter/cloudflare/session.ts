import type { LogPosition } from "../../core/change-log/contract.ts";
import { EdgecacheError } from "../../core/errors.ts";

/**
 * Sessions of the change log's `session` mode (see `DurableChangeLog`): a client carries the
 * log position of what it last wrote or read, `<log>.<seq>`, in a request header (API
 * clients) or a cookie (browsers), and each response hands back the newer position. An
 * isolate behind a client's position syncs before it answers: read-your-writes and
 * monotonic reads for that client, without a trip to the log's object for anyone else.
 */
export const SESSION_HEADER = "x-edgecache-session";
export const SESSION_COOKIE = "edgecache_session";

const TOKEN = /^([0-9a-f]{1,64})\.(\d{1,15})$/;

/** A session token as responses carry it. */
export function formatSession(position: LogPosition): string {
  return `${position.log}.${position.seq}`;
}

/** A token's position, or undefined when it is not one this API hands out. */
export function parseSession(token: string): LogPosition | undefined {
  const match = TOKEN.exec(token.trim());
  return match ? { log: match[1]!, seq: Number(match[2]) } : undefined;
}

/**
 * The session a request carries: its header, else its cookie. A malformed header is the
 * client's error (400); a malformed cookie is dropped (a browser could not get rid of it)
 * and replaced by the response's.
 */
export function requestSession(request: Request): LogPosition | undefined {
  const header = request.headers.get(SESSION_HEADER);
  if (header !== null) {
    const position = parseSession(header);
    if (!position) {
      throw new EdgecacheError(
        "E_BAD_HEADER",
        "session",
        `${SESSION_HEADER}: expected <log>.<seq> as a response of this API gave it, got "${header.slice(0, 80)}"`,
      );
    }
    return position;
  }
  const cookie = cookieValue(request.headers.get("cookie"), SESSION_COOKIE);
  return cookie === undefined ? undefined : parseSession(cookie);
}

function cookieValue(header: string | null, name: string): string | undefined {
  for (const part of (header ?? "").split(";")) {
    const eq = part.indexOf("=");
    if (eq > 0 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return undefined;
}

/**
 * The position a client has seen after a response: the isolate's, or the client's own if
 * that is further along the same log (the isolate may have failed to reach it).
 */
export function seenAfter(client: LogPosition | undefined, isolate: LogPosition): LogPosition {
  if (client && client.log === isolate.log && client.seq > isolate.seq) return client;
  return isolate;
}

/**
 * `response` carrying the client's session: the header always, the cookie when the position
 * moved from what the request carried (a write, or a read through an isolate further along).
 */
export function withSession(
  response: Response,
  sent: LogPosition | undefined,
  seen: LogPosition,
): Response {
  if (seen.log === "") return response; // the log was never heard: nothing to carry
  const token = formatSession(seen);
  const out = new Response(response.body, response);
  out.headers.set(SESSION_HEADER, token);
  // The session is this client's: a route that lets shared caches reuse its answers
  // (`browser.shared`) must not have a CDN hand one client's session to others.
  const cc = out.headers.get("cache-control");
  if (cc && !/\b(private|no-store|no-cache)\b/i.test(cc)) {
    out.headers.set("cache-control", `private, ${cc}`);
  }
  if (!sent || sent.log !== seen.log || sent.seq !== seen.seq) {
    out.headers.append(
      "set-cookie",
      `${SESSION_COOKIE}=${token}; Path=/; SameSite=Lax; HttpOnly; Secure`,
    );
  }
  return out;
}
