/** Comparing two replies, and saying where they first differ. */
import { isDeepStrictEqual } from "node:util";
import type { Reply } from "./ops.ts";

export function sameReply(a: Reply, b: Reply): boolean {
  return a.status === b.status && isDeepStrictEqual(a.body, b.body);
}

/** The first place two JSON values differ, as `articles[2].favoritesCount: 3 vs 4`. */
export function firstDifference(a: unknown, b: unknown, path = ""): string | undefined {
  if (isDeepStrictEqual(a, b)) return undefined;
  const show = (x: unknown) => JSON.stringify(x)?.slice(0, 120) ?? String(x);
  if (Array.isArray(a) && Array.isArray(b)) {
    for (let i = 0; i < Math.max(a.length, b.length); i++) {
      const d = firstDifference(a[i], b[i], `${path}[${i}]`);
      if (d) return a.length === b.length ? d : `${d} (lengths ${a.length} vs ${b.length})`;
    }
  }
  if (isObject(a) && isObject(b)) {
    for (const key of new Set([...Object.keys(a), ...Object.keys(b)])) {
      const d = firstDifference(a[key], b[key], path ? `${path}.${key}` : key);
      if (d) return d;
    }
  }
  return `${path || "(body)"}: ${show(a)} vs ${show(b)}`;
}

function isObject(x: unknown): x is Record<string, unknown> {
  return typeof x === "object" && x !== null && !Array.isArray(x);
}

/** A body cut to `n` characters of JSON, for messages. */
export function abbreviated(body: unknown, n = 400): string {
  const json = JSON.stringify(body) ?? "null";
  return json.length > n ? `${json.slice(0, n)}…` : json;
}

/**
 * The part of a body a difference is in: the element of its first array (`articles[7]`),
 * or the whole body; for messages that show what differs rather than where a list begins.
 */
export function around(body: unknown, difference: string): unknown {
  const match = /^([A-Za-z]+)\[(\d+)\]/.exec(difference);
  if (!match || typeof body !== "object" || body === null) return body;
  const list = (body as Record<string, unknown>)[match[1]!];
  return Array.isArray(list) ? list[Number(match[2])] : body;
}
