import type { CacheEntry } from "../../core/entry.ts";
import { EdgecacheError } from "../../core/errors.ts";
import { errorBody } from "../errors.ts";
import { type CacheOutcome, entryReply, type Forward, replyResponse } from "../http.ts";
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
  return replyResponse(r);
}

export function missOutcome(loaded: Loaded & { kind: "entry" }, fwd: Forward): CacheOutcome {
  return {
    kind: "miss",
    stored: loaded.stored,
    fwd,
    ...(loaded.originStatus === 304 && { fwdStatus: 304 }),
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
