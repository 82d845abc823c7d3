import type { IncomingMessage } from "node:http";
import { type EntryReply, entryReply } from "../../../app/http.ts";
import type { CacheEntry } from "../../../core/entries/entry.ts";
import { extend } from "../../../core/entries/extend.ts";

/** What the hit lookup reads of a request: node:http's IncomingMessage, or the raw path's. */
export type HitRequest = Pick<IncomingMessage, "method" | "url" | "headers">;

export interface HitReply extends EntryReply {
  /** Headers with Content-Length, as both fast paths send them. */
  headers: Record<string, string>;
  /** Whether `headers` is the shared memo of a plain hit (never to be changed). */
  plain: boolean;
}

/**
 * The headers of a plain hit change only when its Age or its Cache-Status ttl ticks to the
 * next whole second, so they are built once per entry and tick, not per request.
 */
const hitHeaders = new WeakMap<CacheEntry, { until: number; headers: Record<string, string> }>();

/**
 * The reply to a fresh hit, as the app would send it (entryReply), plus Content-Length: the
 * body's (a HEAD gets the GET's length); a conditional request may get a 304.
 */
export function hitReply(entry: CacheEntry, req: HitRequest, now: number): HitReply {
  const inm = req.headers["if-none-match"];
  const ims = req.headers["if-modified-since"];
  if (inm === undefined && ims === undefined) {
    let memo = hitHeaders.get(entry);
    if (!memo || now >= memo.until) {
      const reply = entryReply(entry, { kind: "hit" }, now, undefined);
      reply.headers["content-length"] = String(entry.body.byteLength);
      const age = Math.floor((now - entry.createdAt) / 1000);
      const ttl = Math.floor((entry.freshUntil - now) / 1000);
      const until = Math.min(entry.createdAt + (age + 1) * 1000, entry.freshUntil - ttl * 1000 + 1);
      memo = { until, headers: reply.headers };
      hitHeaders.set(entry, memo);
    }
    return { status: entry.status, headers: memo.headers, body: entry.body, plain: true };
  }
  const reply = entryReply(entry, { kind: "hit" }, now, inm, ims);
  if (reply.body) reply.headers["content-length"] = String(reply.body.byteLength);
  return extend(reply, { plain: false });
}
