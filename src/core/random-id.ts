/**
 * Random bytes are drawn this many at a time and handed out 8 per id: each draw from the
 * platform's source costs about as much as a thousand ids' hex, and a write takes three ids.
 */
const POOL_BYTES = 4096;
const pool = new Uint8Array(POOL_BYTES);
let used = POOL_BYTES;
const HEX = Array.from({ length: 256 }, (_, b) => b.toString(16).padStart(2, "0"));

/** 16 hex digits from the platform's random source: names of nodes, logs, tokens. */
export function randomId(): string {
  if (used === POOL_BYTES) {
    crypto.getRandomValues(pool);
    used = 0;
  }
  let id = "";
  for (const end = used + 8; used < end; used++) id += HEX[pool[used]!];
  return id;
}
