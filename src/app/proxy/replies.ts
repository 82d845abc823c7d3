import type { CacheEntry } from "../../core/entry.ts";
import { EdgecacheError } from "../../core/errors.ts";
import { ifRangeHolds, selectRange } from "../../core/range.ts";
import { errorBody } from "../errors.ts";
import {
  type CacheOutcome,
  type EntryReply,
  entryReply,
  type Forward,
  replyResponse,
} from "../http.ts";
import { COMPONENT } from "./routes.ts";
import type { Ctx, Loaded } from "./types.ts";

/** A stored entry's reply to this request (a 304 when the client holds it; HEAD: no body). */
export function reply(ctx: Ctx, entry: CacheEntry, outcome: CacheOutcome, now: number): Response {
  const r = entryReply(
    entry,
    outcome,
    now,
    ctx.headers.get("if-none-match"),
    ctx.headers.get("if-modified-since"),
  );
  if (ctx.method === "HEAD" && r.body) {
    // The length the GET would have, as the fast path sends it.
    r.headers["content-length"] = String(r.body.byteLength);
    r.body = undefined;
  }
  if (ctx.method === "GET" && r.status === 200 && r.body && ctx.headers.has("range")) {
    ranged(r, ctx.headers, entry);
  }
  return replyResponse(r);
}

/**
 * RFC 9110 14.2: a Range request for a stored complete 200 gets the bytes it names (206)
 * or 416, evaluated after the conditionals (a 304 has no range), and only while If-Range
 * still names the stored representation.
 */
function ranged(r: EntryReply, headers: Headers, entry: CacheEntry): void {
  const body = r.body!;
  if (!ifRangeHolds(headers.get("if-range"), entry.etag, entry.headers["last-modified"])) return;
  const answer = selectRange(headers.get("range"), body.byteLength);
  if (answer.kind === "whole") return;
  r.headers["accept-ranges"] = "bytes";
  if (answer.kind === "unsatisfiable") {
    r.status = 416;
    r.headers["content-range"] = `bytes */${body.byteLength}`;
    r.body = new Uint8Array();
    return;
  }
  r.status = 206;
  r.headers["content-range"] = `bytes ${answer.start}-${answer.end}/${body.byteLength}`;
  r.body = body.subarray(answer.start, answer.end + 1);
}

export function missOutcome(loaded: Loaded & { kind: "entry" }, fwd: Forward): CacheOutcome {
  return {
    kind: "miss",
    stored: loaded.stored,
    fwd,
    ...(loaded.originStatus === 304 && { fwdStatus: 304 }),
    ...(loaded.unstored && { detail: loaded.unstored }),
  };
}

export function errorReply(err: EdgecacheError, fwd: Forward, status?: number): Response {
  const { status: mapped, body } = errorBody(err);
  return new Response(body, {
    status: status ?? mapped,
    headers: {
      "content-type": "application/json",
      "cache-status": `edgecache; fwd=${fwd}; detail=${err.code}`,
    },
  });
}

export function downReply(error: unknown, fwd: Forward): Response {
  return errorReply(
    new EdgecacheError("E_ORIGIN_UNAVAILABLE", COMPONENT, "the origin could not be reached", {
      cause: error,
    }),
    fwd,
  );
}
