import { sha256Hex } from "../core/digest.ts";
import type { CacheEntry } from "../core/entries/entry.ts";
import { decodeEntry, encodeEntry } from "../core/entries/entry.ts";
import { EdgecacheError } from "../core/errors.ts";

/**
 * What the Cloudflare stores (KV, Cache API) share: how a key too long for the platform
 * is named, and how an entry is packed with its expiry and the key it was stored under.
 */

/** Put between a long key's kept start and its digest. */
const DIGEST_MARK = "#sha256:";
/** Bytes of a digested name beyond the key's kept start: the mark and 64 hex digits. */
const DIGEST_BYTES = DIGEST_MARK.length + 64;

const utf8 = new TextEncoder();
const strictUtf8 = new TextDecoder("utf-8", { fatal: true });

/** Where a key is stored: `name`, and whether that is a digest (then the key is kept in the value). */
export interface StorageName {
  name: string;
  digested: boolean;
}

/**
 * The name `key` is stored under when names may have at most `maxBytes` UTF-8 bytes:
 * the key itself when it fits and the platform accepts it, otherwise its start (cut at a
 * character boundary) followed by the SHA-256 of the whole key. Keeping the start keeps
 * prefix listing possible; the full key travels in the value, so a get checks it.
 */
export async function storageName(
  key: string,
  maxBytes: number,
  refused: (key: string) => boolean = () => false,
): Promise<StorageName> {
  if (utf8.encode(key).byteLength <= maxBytes && !refused(key)) {
    return { name: key, digested: false };
  }
  const kept = digestedStart(key, maxBytes);
  return { name: `${kept}${DIGEST_MARK}${await sha256Hex(key)}`, digested: true };
}

/**
 * The start of `text` that a digested name of at most `maxBytes` keeps. For a prefix of a
 * key, it is a prefix of that key's digested name: listing by it finds the key.
 */
export function digestedStart(text: string, maxBytes: number): string {
  return cutToBytes(text, maxBytes - DIGEST_BYTES);
}

/** The longest start of `text` of at most `maxBytes` UTF-8 bytes, cut between code points. */
function cutToBytes(text: string, maxBytes: number): string {
  let bytes = 0;
  let end = 0;
  for (const char of text) {
    const size = utf8.encode(char).byteLength;
    if (bytes + size > maxBytes) break;
    bytes += size;
    end += char.length;
  }
  return text.slice(0, end);
}

/** What travels beside an entry: when it expires (null: never) and its key if digested. */
export interface PackedHeader {
  expiresAt: number | null;
  key?: string;
}

/**
 * Byte layout: bytes 0-3 the header length n (uint32, big-endian), n bytes of header
 * (`PackedHeader` as UTF-8 JSON), then the entry as `encodeEntry` writes it.
 */
export function packEntry(header: PackedHeader, entry: CacheEntry): Uint8Array {
  const json = utf8.encode(JSON.stringify(header));
  const encoded = encodeEntry(entry);
  const bytes = new Uint8Array(4 + json.byteLength + encoded.byteLength);
  new DataView(bytes.buffer).setUint32(0, json.byteLength);
  bytes.set(json, 4);
  bytes.set(encoded, 4 + json.byteLength);
  return bytes;
}

/** The header of what `packEntry` wrote, without decoding the entry. Throws when malformed. */
export function packedHeader(bytes: Uint8Array): PackedHeader {
  if (bytes.byteLength < 4) throw new TypeError(`${bytes.byteLength} bytes, too short`);
  const length = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getUint32(0);
  if (4 + length > bytes.byteLength) throw new TypeError("header runs past the end");
  const header: unknown = JSON.parse(strictUtf8.decode(bytes.subarray(4, 4 + length)));
  const { expiresAt, key } = (header ?? {}) as Partial<PackedHeader>;
  if (
    (expiresAt !== null && typeof expiresAt !== "number") ||
    (key !== undefined && typeof key !== "string")
  ) {
    throw new TypeError("header lacks expiresAt");
  }
  return key === undefined ? { expiresAt } : { expiresAt, key };
}

/** The entry of what `packEntry` wrote. Throws when malformed. */
export function unpackEntry(bytes: Uint8Array): CacheEntry {
  const length = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getUint32(0);
  return decodeEntry(bytes.subarray(4 + length));
}

/**
 * Whether a packed value read under `name` is the live entry of `key` at `now`: the key
 * matches (a digested name records its key; two keys may share a start and a digest
 * never) and its expiry has not come.
 */
export function isLiveFor(header: PackedHeader, key: string, name: string, now: number): boolean {
  if ((header.key ?? name) !== key) return false;
  return header.expiresAt === null || now < header.expiresAt;
}

/** A ttl beyond this (or Infinity) is stored without platform expiry, as Redis does. */
export const MAX_TTL_MS = Number.MAX_SAFE_INTEGER;

/** The error of a store `component` whose platform call failed or returned garbage. */
export function unavailable(component: string, what: string, cause?: unknown): EdgecacheError {
  return new EdgecacheError("E_STORE_UNAVAILABLE", component, what, { cause });
}

/** Runs a platform call; its failure becomes `unavailable`. */
export async function guarded<T>(component: string, what: string, call: () => Promise<T>) {
  try {
    return await call();
  } catch (error) {
    throw unavailable(component, what, error);
  }
}

/** Whether packed `bytes` read under `name` are `key`'s live entry; corrupt bytes throw. */
export function isLivePacked(
  component: string,
  bytes: Uint8Array,
  key: string,
  name: string,
  now: number,
): boolean {
  let header: PackedHeader;
  try {
    header = packedHeader(bytes);
  } catch (error) {
    throw unavailable(component, `corrupt entry under ${JSON.stringify(key)}`, error);
  }
  return isLiveFor(header, key, name, now);
}

/** The entry of packed `bytes` stored for `key`; corrupt bytes throw `unavailable`. */
export function unpackFor(component: string, key: string, bytes: Uint8Array): CacheEntry {
  try {
    return unpackEntry(bytes);
  } catch (error) {
    throw unavailable(component, `corrupt entry under ${JSON.stringify(key)}`, error);
  }
}

/** An entry packed to be stored under `stored` for `ttlMs` (positive) from `now`. */
export function packFor(
  component: string,
  key: string,
  stored: StorageName,
  entry: CacheEntry,
  ttlMs: number,
  now: number,
): { bytes: Uint8Array; expiresAt: number | null } {
  const expiresAt = ttlMs > MAX_TTL_MS ? null : now + ttlMs;
  try {
    const bytes = packEntry(stored.digested ? { expiresAt, key } : { expiresAt }, entry);
    return { bytes, expiresAt };
  } catch (error) {
    throw unavailable(component, "cannot serialise entry (meta must be JSON)", error);
  }
}
