import type { CacheEntry } from "../../core/entries/entry.ts";
import { EdgecacheError } from "../../core/errors.ts";
import { errorBody } from "../errors.ts";
import {
  type CacheOutcome,
  type EntryReply,
  entryReply,
  type Forward,
  replyResponse,
} from "../http.ts";
import {
  type ByteSpan,
  ifRangeHolds,
  type RangeAnswer,
  selectRange,
} from "../http-caching/ranges.ts";
import { fromPiece, pieceOf } from "./partial.ts";
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
  const piece = r.status === 206 ? pieceOf(entry) : undefined;
  // A stored piece (RFC 9111 3.3): only a request it answers gets here (see `answers`).
  const answer = piece && fromPiece(piece, entry, ctx.method, ctx.headers);
  if (piece && answer) part(r, answer, piece);
  return replyResponse(r);
}

/**
 * RFC 9110 14.2: a Range request for a stored complete 200 gets the bytes it names (206)
 * or 416, evaluated after the conditionals (a 304 has no range), and only while If-Range
 * still names the stored representation.
 */
function ranged(r: EntryReply, headers: Headers, entry: CacheEntry): void {
  const size = r.body!.byteLength;
  if (!ifRangeHolds(headers.get("if-range"), entry.etag, entry.headers["last-modified"])) return;
  const answer = selectRange(headers.get("range"), size);
  if (answer.kind !== "whole") part(r, answer, { start: 0, end: size - 1, size });
}

/** The reply made a 206 of the bytes `answer` names, or a 416; `r.body` holds `held`. */
function part(
  r: EntryReply,
  answer: Exclude<RangeAnswer, { kind: "whole" }>,
  held: ByteSpan,
): void {
  r.headers["accept-ranges"] = "bytes";
  if (answer.kind === "unsatisfiable") {
    r.status = 416;
    r.headers["content-range"] = `bytes */${held.size}`;
    r.body = new Uint8Array();
    return;
  }
  r.status = 206;
  r.headers["content-range"] = `bytes ${answer.start}-${answer.end}/${held.size}`;
  r.body = r.body!.subarray(answer.start - held.start, answer.end - held.start + 1);
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
