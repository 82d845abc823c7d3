import type { LogPosition } from "../change-log/contract.ts";
import type { ListDependency } from "../deps/planner.ts";
import { extend } from "./extend.ts";

/**
 * What every tier stores under a key: the response bytes ready to send, and what the
 * engine needs to decide freshness and invalidation. Times are epoch milliseconds.
 */
export interface CacheEntry {
  /** Payload bytes (a JSON body for the data API, any bytes for the library). */
  body: Uint8Array;
  /** Response headers to send with the body (content-type and the like). */
  headers: Record<string, string>;
  status: number;
  createdAt: number;
  /** Fresh until this time; served as a hit. */
  freshUntil: number;
  /** After freshUntil and until this time the entry may be served stale while revalidating. */
  staleUntil: number;
  /** Strong ETag, quoted: `"abc"`. */
  etag: string;
  /** What the entry depends on: row tags (`users#123-abc`), table tags, user tags. */
  tags: string[];
  /** Predicates and windows of the lists the entry holds (data API); see the planner. */
  lists?: ListDependency[];
  /** Opaque metadata the owner of the entry needs later (the data API keeps its query here). */
  meta?: unknown;
  /**
   * The change log position its load began at: a node that reads the entry from a shared
   * tier checks it against every change since. Without one it is served from memory only.
   */
  position?: LogPosition;
  /**
   * Its load saw the source exactly as of `position`: when it read, no write was in flight
   * on a shared log (see `ChangeLog.quietSince`). Only such a response may be patched with
   * what its neighbours show and what its rows' absence implies.
   */
  exact?: boolean;
  /**
   * Seconds a browser or CDN may reuse a reply of this entry without asking (its
   * Cache-Control's max-age plus stale-while-revalidate), set by an owner that keeps the
   * entry current through invalidation (the data API). Such a hit is the source's answer as
   * of the reply, so it is sent with `Age: 0` and the bound counts from there (RFC 9111
   * 4.2.3), and Cache-Status states it (`detail="browser-bound=N"`).
   */
  browserBound?: number;
}

/**
 * A body made when it is first asked for. A write patches the responses it changes in
 * memory; encoding each (and hashing its ETag) is work for nobody when the next write patches
 * it again before anyone reads it, as a list's deep pages are at each insert at its head. The
 * owner gives the value the body encodes instead, and takes it back at its next patch
 * (`deferredBody`). Only for the first tier: any other encodes the entry whole.
 */
export interface DeferredBody {
  /** What the body encodes: the owner's, never changed. */
  readonly value: unknown;
  /** The bytes of `value`. */
  encode(): Uint8Array;
  /** Its length, roughly (see `bodyLength`). */
  readonly length: number;
  /** The heap `value` takes, on the high side: what a tier bounded by bytes counts for it. */
  readonly heap: number;
}

/** Whether an entry's body as given is a DeferredBody, not bytes (from any realm) or text. */
export function isDeferredBody(body: unknown): body is DeferredBody {
  return (
    typeof body === "object" &&
    body !== null &&
    !ArrayBuffer.isView(body) &&
    typeof (body as DeferredBody).encode === "function"
  );
}

/** Entries whose body is not made yet, with what it will be made of and how to hash it. */
const deferred = new WeakMap<
  CacheEntry,
  { body: DeferredBody; etagOf: (body: Uint8Array) => string }
>();

/**
 * `fields` as an entry whose body, and the ETag hashed from it (`etagOf`), are made at the
 * first read of either. Until then `deferredBody` gives what they will be made of.
 */
export function deferredEntry(
  fields: Omit<CacheEntry, "body" | "etag">,
  body: DeferredBody,
  etagOf: (body: Uint8Array) => string,
): CacheEntry {
  // The two are read through DEFERRED until made, then are the entry's own fields. Its
  // other fields are its own from the start: the object keeps V8's fast properties (getters
  // of its own, or fields redefined on it, would make it a dictionary, and every hit on it
  // slower).
  const entry = Object.assign(Object.create(DEFERRED) as CacheEntry, fields);
  deferred.set(entry, { body, etagOf });
  return entry;
}

const DEFERRED = {
  get body(): Uint8Array {
    return madeEntry(this as unknown as CacheEntry).body;
  },
  set body(body: Uint8Array) {
    madeEntry(this as unknown as CacheEntry).body = body;
  },
  get etag(): string {
    return madeEntry(this as unknown as CacheEntry).etag;
  },
  set etag(etag: string) {
    madeEntry(this as unknown as CacheEntry).etag = etag;
  },
};

/**
 * The entry with its body and ETag made, as fields of its own, if it was deferred: what
 * the cache hands out, so that a caller may copy it as any other (a spread, JSON, a
 * structured clone see only an object's own fields).
 */
export function madeEntry(entry: CacheEntry): CacheEntry {
  const later = deferred.get(entry);
  if (!later) return entry;
  const body = later.body.encode();
  deferred.delete(entry);
  return Object.defineProperties(entry, {
    body: { value: body, writable: true, enumerable: true, configurable: true },
    etag: { value: later.etagOf(body), writable: true, enumerable: true, configurable: true },
  });
}

/** What an entry's body will be made of, while it is not made yet (see DeferredBody). */
export function deferredBody(entry: CacheEntry): DeferredBody | undefined {
  return deferred.get(entry)?.body;
}

/** An entry's body length, without making a deferred one (then its estimate). */
export function bodyLength(entry: CacheEntry): number {
  return deferred.get(entry)?.body.length ?? entry.body.byteLength;
}

/** Bytes an entry occupies, roughly: body plus a fixed allowance for headers and tags. */
export function entrySize(entry: CacheEntry): number {
  let size = bodyLength(entry) + 64;
  for (const k in entry.headers) size += k.length + (entry.headers[k]?.length ?? 0);
  for (const t of entry.tags) size += t.length;
  return size;
}

/**
 * Byte layout of an encoded entry, for tiers that hold one byte string per key (Redis):
 * byte 0 the format version, bytes 1-4 the header length n (uint32, big-endian), then n
 * bytes of header (every field but `body`, as UTF-8 JSON), then the body. The version
 * byte lets a process tell an entry written in another format (a rolling deploy sharing
 * the tier) from its own.
 */
const ENTRY_FORMAT = 1;
const PREFIX_BYTES = 5;
/** JSON has no Infinity: a time that never comes (a ttl of Infinity) is written as a string. */
const TIME_FIELDS = ["createdAt", "freshUntil", "staleUntil"] as const;
const NON_FINITE = new Set(["Infinity", "-Infinity", "NaN"]);

const utf8 = new TextEncoder();
const strictUtf8 = new TextDecoder("utf-8", { fatal: true });

/**
 * The whole entry as bytes, fields added to CacheEntry later included. `meta` must be
 * JSON-serialisable (a BigInt throws).
 *
 * @example
 * ```ts
 * const bytes = encodeEntry(entry);
 * decodeEntry(bytes); // equal to entry
 * ```
 */
export function encodeEntry(entry: CacheEntry): Uint8Array {
  // `body` is read first: a deferred entry's fields are then all its own (see made).
  const { body, ...rest } = entry;
  const header: Record<string, unknown> = rest;
  for (const field of TIME_FIELDS) {
    if (!Number.isFinite(entry[field])) header[field] = String(entry[field]);
  }
  const json = utf8.encode(JSON.stringify(header));
  const bytes = new Uint8Array(PREFIX_BYTES + json.byteLength + body.byteLength);
  bytes[0] = ENTRY_FORMAT;
  new DataView(bytes.buffer).setUint32(1, json.byteLength);
  bytes.set(json, PREFIX_BYTES);
  bytes.set(body, PREFIX_BYTES + json.byteLength);
  return bytes;
}

/**
 * Reads what `encodeEntry` wrote. The body is a view into `bytes`, not a copy. Throws,
 * saying what is wrong, when `bytes` is not an entry in this format.
 */
export function decodeEntry(bytes: Uint8Array): CacheEntry {
  if (bytes.byteLength < PREFIX_BYTES) {
    throw new TypeError(`${bytes.byteLength} bytes, too short for an entry`);
  }
  if (bytes[0] !== ENTRY_FORMAT) throw new TypeError(`unknown entry format ${bytes[0]}`);
  const length = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getUint32(1);
  const bodyStart = PREFIX_BYTES + length;
  if (bodyStart > bytes.byteLength) {
    throw new TypeError(`header of ${length} bytes runs past the end (${bytes.byteLength} bytes)`);
  }
  const header: unknown = JSON.parse(strictUtf8.decode(bytes.subarray(PREFIX_BYTES, bodyStart)));
  if (typeof header !== "object" || header === null || Array.isArray(header)) {
    throw new TypeError("header is not an object");
  }
  const fields = header as Record<string, unknown>;
  for (const field of TIME_FIELDS) {
    const value = fields[field];
    if (typeof value === "string" && NON_FINITE.has(value)) fields[field] = Number(value);
    else if (typeof value !== "number")
      throw new TypeError(`header field ${field} is not a number`);
  }
  const { headers, status, etag, tags, lists } = fields;
  if (
    typeof headers !== "object" ||
    headers === null ||
    !Object.values(headers).every((v) => typeof v === "string") ||
    typeof status !== "number" ||
    typeof etag !== "string" ||
    !Array.isArray(tags) ||
    !tags.every((t) => typeof t === "string") ||
    (lists !== undefined && !Array.isArray(lists))
  ) {
    throw new TypeError("header lacks the fields of an entry");
  }
  // A plain Uint8Array even when `bytes` is a Node Buffer.
  const body = new Uint8Array(
    bytes.buffer,
    bytes.byteOffset + bodyStart,
    bytes.byteLength - bodyStart,
  );
  return extend(fields as Omit<CacheEntry, "body">, { body });
}
