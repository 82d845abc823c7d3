/**
 * Child process of bench/hits.ts: edgecache over the embedded demo database, warmed so that
 * `--path` is a memory-tier hit. Prints one JSON line `{"url": ...}` once ready.
 *
 *   node --import tsx bench/servers/edgecache-server.ts --dir /tmp/x --path '/v1/users?...'
 */
import { parseArgs } from "node:util";
import { createNodeEdgecache } from "../../src/adapter/node/modes/data-api.ts";
import { onParentGone } from "./lifecycle.ts";

const { values } = parseArgs({
  options: { dir: { type: "string" }, path: { type: "string" } },
});
if (!values.dir || !values.path) {
  throw new Error("[bench] [edgecache-server] expected --dir and --path");
}

const edgecache = await createNodeEdgecache({
  cwd: values.dir,
  // Hits are answered from the memory tier; a SQLite tier would only add disk writes
  // while warming, so the measured path is the same without it.
  cacheFile: false,
  port: 0,
});
const { url } = await edgecache.listen();

// The first request is the miss that stores the entry; every later one is a hit.
const warm = await fetch(url + values.path);
await warm.arrayBuffer();
if (!warm.ok) throw new Error(`[bench] [edgecache-server] warming ${values.path}: ${warm.status}`);

onParentGone(async () => {
  // Closing before exit lets `--cpu-prof` write its profile (it does on a normal exit).
  await edgecache.close();
  process.exit(0);
});
process.stdout.write(`${JSON.stringify({ url })}\n`);
