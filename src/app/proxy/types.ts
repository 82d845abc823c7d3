import type { CacheEntry } from "../../core/entries/entry.ts";
import {
  cachingHeaders,
  type HeaderRecord,
  OWN_TARGETED_FIELD,
  type PolicyClass,
  type RequestDirectives,
} from "../http-caching/rules.ts";
import type { Route } from "./routes.ts";

/** Passes an interim response (RFC 9110 15.2: 1xx, such as 103 Early Hints) on to the client. */
export type Interim = (status: number, headers: Headers) => void;

/** Per request: what the handler knows once the route is found. */
export interface Ctx {
  route: Route;
  /**
   * The host part of its keys (`keyHost`): the host, and the scheme unless it is http, since
   * the origin is told the scheme (X-Forwarded-Proto) and may answer by it.
   */
  host: string;
  /** The host the origin is told (X-Forwarded-Host): `host` without the scheme. */
  forwardedHost: string;
  /** The scheme the request came in by: the listener's (X-Forwarded-Proto), "http" or "https". */
  scheme: string;
  target: string;
  /** The request URL as the client asked for it. */
  url: URL;
  method: string;
  headers: Headers;
  clientAddress: string | undefined;
  directives: RequestDirectives;
  /** Where interim responses for this client go, if the runtime can send them. */
  interim: Interim | undefined;
  /** The request headers the URL's stored answers vary by (its Vary record), if any. */
  varied?: readonly string[];
  /** A request of edgecache's own (the manifest's): not counted as a client's read. */
  background?: boolean;
  /**
   * Edgecache's own intent to ask the origin though a fresh copy is held (the manifest
   * keeper's refresh): RFC 9111 5.2.1.4's no-cache, held here rather than in a header, which
   * a route ignoring clients' directives would drop.
   */
  refresh?: boolean;
}

/** What `meta` holds for a stored response. */
export interface ResponseMeta {
  /** http-cache-semantics' serialized policy, for revalidation. */
  policy: ReturnType<InstanceType<PolicyClass>["toObject"]>;
  /** stale-while-revalidate and stale-if-error windows after freshUntil, ms. */
  swr: number;
  sie: number;
  /** Vary names the response was selected by, if any. */
  vary?: string[];
  /** Edgecache-Cache-Control as the origin sent it (kept here: clients never get it). */
  targeted?: string;
}

/** What `meta` holds for a Vary record (stored under the URL's key instead of a response). */
export interface VaryMeta {
  varyRecord: string[];
}

/** What one origin request came to; shared by the requests coalesced on it. */
export type Loaded =
  | {
      kind: "entry";
      entry: CacheEntry;
      key: string;
      stored: boolean;
      /** Why it was not stored (the cache's reason), when it was not. */
      unstored?: string;
      originStatus: number;
      /** The origin was asked the client's own Range, so this is its answer (a piece). */
      clientRange?: boolean;
    }
  /**
   * Streamed through, not stored: only the request that made it may read the body.
   * `clientRange` as for an entry.
   */
  | { kind: "pass"; response: Response; detail: string; clientRange?: boolean }
  | { kind: "down"; error: unknown };

/** RFC 5861 4: the origin statuses stale-if-error covers. */
export const ERROR_STATUSES = new Set([500, 502, 503, 504]);

/** Internal tags: URL tags for purge and invalidation, user tags, Vary records. */
export const URL_TAG = "url:";
export const USER_TAG = "tag:";
export const VARY_RECORD = "vary-record";

export function isVaryRecord(entry: CacheEntry): entry is CacheEntry & { meta: VaryMeta } {
  return Array.isArray((entry.meta as Partial<VaryMeta> | undefined)?.varyRecord);
}

/** Tags of a stored response: its URL (for URL purges and invalidation) and the origin's. */
export function entryTags(target: string, tags: string[]): string[] {
  return [URL_TAG + target, ...tags.map((t) => USER_TAG + t)];
}

/** A stored response's headers as the origin sent them, Edgecache-Cache-Control included. */
export function originHeadersOf(entry: CacheEntry): HeaderRecord {
  const targeted = (entry.meta as ResponseMeta | undefined)?.targeted;
  return targeted === undefined
    ? entry.headers
    : { ...entry.headers, [OWN_TARGETED_FIELD]: targeted };
}

/** The Cache-Control edgecache obeys for a stored response (RFC 9213 2.1). */
export function storedCacheControl(entry: CacheEntry): string | undefined {
  return cachingHeaders(originHeadersOf(entry))["cache-control"];
}
