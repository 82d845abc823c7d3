/** HTTP checks around the load: the exact replies, and edgecache's hit counters. */
import { get } from "node:http";
import { connect } from "node:net";
import type { LoadResult } from "./load.ts";
import { fail } from "./settings.ts";

export interface Reply {
  status: number;
  /** Lower-cased names, as sent. */
  headers: Record<string, string>;
  body: Buffer;
}

/** One GET over node:http, to see the exact headers and bytes (fetch would rewrite some). */
export function request(url: string): Promise<Reply> {
  return new Promise((resolveReply, reject) => {
    get(url, { agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => {
        const headers: Record<string, string> = {};
        for (let i = 0; i < res.rawHeaders.length; i += 2) {
          headers[res.rawHeaders[i]!.toLowerCase()] = res.rawHeaders[i + 1]!;
        }
        resolveReply({ status: res.statusCode ?? 0, headers, body: Buffer.concat(chunks) });
      });
      res.on("error", reject);
    }).on("error", reject);
  });
}

export function headerNames(headers: Record<string, string>): string {
  return Object.keys(headers).sort().join(",");
}

/**
 * Bytes of one whole response (status line, headers, body) as a load tool reads it, from a
 * raw keep-alive GET like wrk's: what the servers put on the wire differs by their headers.
 */
export function responseBytes(url: string): Promise<number> {
  const { hostname, port, pathname, search } = new URL(url);
  return new Promise((resolveBytes, reject) => {
    const socket = connect(Number(port), hostname);
    let data = Buffer.alloc(0);
    socket.setTimeout(5000, () => socket.destroy(new Error(`no complete reply from ${url}`)));
    socket.on("connect", () => {
      socket.write(`GET ${pathname}${search} HTTP/1.1\r\nHost: ${hostname}:${port}\r\n\r\n`);
    });
    socket.on("data", (chunk: Buffer) => {
      data = Buffer.concat([data, chunk]);
      const end = data.indexOf("\r\n\r\n");
      if (end < 0) return;
      const head = data.subarray(0, end).toString("latin1");
      const length = head.match(/\r\ncontent-length:\s*(\d+)/i)?.[1];
      const complete =
        length !== undefined
          ? data.length >= end + 4 + Number(length)
          : data.subarray(-5).toString("latin1") === "0\r\n\r\n"; // chunked: the last chunk
      if (!complete) return;
      socket.destroy();
      resolveBytes(data.length);
    });
    socket.on("error", reject);
  });
}

export interface CacheStats {
  hits: number;
  misses: number;
  staleHits: number;
}

export async function cacheStats(base: string): Promise<CacheStats> {
  const res = await request(`${base}/_edgecache/stats`);
  if (res.status !== 200) fail(`edgecache stats: ${res.status}`);
  return JSON.parse(res.body.toString("utf8")) as CacheStats;
}

/**
 * A round watch (see rounds.ts) for edgecache at `base`: every request of the round must
 * have been a fresh hit. In-flight requests at the end of the round count as hits but not
 * as load-tool requests, hence hits >= requests.
 */
export function onlyFreshHits(base: string) {
  return async () => {
    const before = await cacheStats(base);
    return async (result: LoadResult, round: number) => {
      const after = await cacheStats(base);
      if (after.misses !== before.misses || after.staleHits !== before.staleHits) {
        fail(`round ${round}: edgecache served misses or stale hits during the load`);
      }
      if (after.hits - before.hits < result.requests) {
        fail(`round ${round}: ${after.hits - before.hits} hits for ${result.requests} requests`);
      }
    };
  };
}
