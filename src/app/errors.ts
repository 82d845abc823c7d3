import type { Context, MiddlewareHandler } from "hono";
import { bodyLimit } from "hono/body-limit";
import type { ContentfulStatusCode } from "hono/utils/http-status";
import { EdgecacheError, type ErrorCode } from "../core/errors.ts";
import { storageFault } from "../sources/storage.ts";

const STATUS: Partial<Record<ErrorCode, ContentfulStatusCode>> = {
  E_BAD_QUERY: 400,
  E_BAD_BODY: 400,
  E_BAD_HEADER: 400,
  E_BAD_OPTION: 400,
  E_NOT_FOUND: 404,
  E_METHOD_NOT_ALLOWED: 405,
  E_CONFLICT: 409,
  E_TOO_LARGE: 413,
  E_UNAUTHORIZED: 401,
  E_FORBIDDEN: 403,
  E_UNSUPPORTED_MEDIA_TYPE: 415,
  E_SOURCE_UNAVAILABLE: 503,
  E_SOURCE_BUSY: 503,
  E_SOURCE_FULL: 507,
  E_ORIGIN_UNAVAILABLE: 502,
  E_STORE_UNAVAILABLE: 503,
  E_LOG_UNAVAILABLE: 503,
};

/** `{"error": {"code", "message"}}` bytes and status for an error. */
export function errorBody(err: unknown): { status: ContentfulStatusCode; body: string } {
  if (err instanceof EdgecacheError) {
    const status = STATUS[err.code] ?? 500;
    // Client-facing: the message without the "[edgecache] [component]" prefix. Internal
    // errors say only that something failed; the cause stays in the server log.
    const message = status === 500 ? "internal error" : err.message.replace(/^(\[[^\]]*\] )+/, "");
    return { status, body: JSON.stringify({ error: { code: err.code, message } }) };
  }
  return {
    status: 500,
    body: JSON.stringify({ error: { code: "E_INTERNAL", message: "internal error" } }),
  };
}

/** Seconds a client is told to wait after the database was locked or out of reach. */
const BUSY_RETRY_AFTER_S = 1;

/** Fields an error's response must carry besides its body. */
function errorHeaders(err: unknown): Record<string, string> {
  const headers: Record<string, string> = { "content-type": "application/json" };
  // RFC 9110 15.5.2: a 401 says how to authenticate (RFC 6750 3: the bearer scheme).
  if (err instanceof EdgecacheError && err.code === "E_UNAUTHORIZED") {
    headers["www-authenticate"] = 'Bearer realm="edgecache"';
  }
  // RFC 9110 10.2.3: the lock was held for the whole busy timeout, or the database is away
  // (a restart takes seconds): a retry soon may pass. Not when its storage refuses writes
  // (read-only, I/O errors: storageFault): that lasts until an operator acts.
  if (
    err instanceof EdgecacheError &&
    (err.code === "E_SOURCE_BUSY" || err.code === "E_SOURCE_UNAVAILABLE") &&
    storageFault(err) === undefined
  ) {
    headers["retry-after"] = String(BUSY_RETRY_AFTER_S);
  }
  return headers;
}

/** Hono onError handler: JSON errors, never a stack trace or a database message. */
export function onError(err: Error, c: Context): Response {
  const { status, body } = errorBody(err);
  if (status >= 500) console.error("[edgecache] request failed:", err);
  return c.body(body, status, errorHeaders(err));
}

/** Hono notFound handler: the same JSON error shape as every other error. */
export function notFound(): Response {
  return errorResponse(new EdgecacheError("E_NOT_FOUND", "http", "no such route"));
}

/** An error as a response outside Hono's handlers (before a request reaches the app). */
export function errorResponse(err: unknown): Response {
  const { status, body, headers } = errorReply(err);
  return new Response(body, { status, headers });
}

/** An error's status, fields and body, for a runtime that writes them itself. */
export function errorReply(err: unknown): {
  status: ContentfulStatusCode;
  headers: Record<string, string>;
  body: string;
} {
  return { ...errorBody(err), headers: errorHeaders(err) };
}

/** Largest request body the APIs read (a row, an invalidation request). */
export const MAX_BODY_BYTES = 1024 * 1024;

function tooLarge(): Response {
  const { status, body } = errorBody(
    new EdgecacheError("E_TOO_LARGE", "http", `body: larger than ${MAX_BODY_BYTES} bytes`),
  );
  return new Response(body, { status, headers: { "content-type": "application/json" } });
}

/** A body sent without a declared length (chunked), counted as it is read. */
const limitStreamed = bodyLimit({ maxSize: MAX_BODY_BYTES, onError: tooLarge });

/**
 * Refuses request bodies over MAX_BODY_BYTES with a JSON 413 before they are read. A
 * declared length is checked from the header alone, as hono's bodyLimit does, but without
 * asking for the body's stream: on Node that builds the web Request (@hono/node-server
 * makes it lazily), a tenth of a small write's CPU, where reading the JSON does not need
 * it. The HTTP parser holds a body to its Content-Length (RFC 9112 6.2). A body without
 * one is counted as it is read, for the methods whose bodies the APIs read (POST, PUT and
 * PATCH, as jsonOnly); another method's body is never read (Node discards it).
 */
export const limitBody: MiddlewareHandler = (c, next) => {
  const method = c.req.method;
  // A GET's or HEAD's body is never read (fetch's Request has none for them).
  if (method === "GET" || method === "HEAD") return next();
  const length = c.req.header("content-length");
  if (length !== undefined && c.req.header("transfer-encoding") === undefined) {
    return Number.parseInt(length, 10) > MAX_BODY_BYTES ? Promise.resolve(tooLarge()) : next();
  }
  if (method !== "POST" && method !== "PUT" && method !== "PATCH") return next();
  return limitStreamed(c, next);
};

/** RFC 6838 JSON media types: application/json and application/<anything>+json. */
const JSON_MEDIA_TYPE = /^application\/(?:[\w.!#$&^-]+\+)?json\s*(?:;|$)/i;

/**
 * Refuses a POST, PUT or PATCH whose body is not declared JSON with a 415 before it is read.
 * A browser sends a cross-origin text/plain or form body without asking (a "simple"
 * request, Fetch standard); a JSON one only after a CORS preflight, which these APIs do
 * not grant.
 */
export const jsonOnly: MiddlewareHandler = async (c, next) => {
  const method = c.req.method;
  if (method === "POST" || method === "PUT" || method === "PATCH") {
    const type = c.req.header("content-type");
    if (!type || !JSON_MEDIA_TYPE.test(type)) {
      throw new EdgecacheError(
        "E_UNSUPPORTED_MEDIA_TYPE",
        "http",
        `content-type: expected application/json, got ${type === undefined ? "none" : JSON.stringify(type)}`,
      );
    }
  }
  await next();
};
