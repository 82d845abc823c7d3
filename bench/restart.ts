/**
 * Remembered across starts (issue 47): one node, stopped cleanly and started again on its
 * cache file, with writes and unrelated purges before the stop. How many of the entries
 * that nothing concerned are hits after the restart (target ≥ 99%), and whether what was
 * concerned is loaded again (0 stale). The real CLI in its own processes, as a user runs
 * it: `edgecache serve` (the demo database) and `edgecache proxy` (an origin in this
 * process that says max-age=3600), each in a fresh folder, stopped with SIGTERM.
 *
 *   npm run bench:restart                   # 1,000 rows and 1,000 URLs, 1% written
 *   npm run bench:restart -- --entries 5000 --written 0.05
 *
 * A control run does the same without the writes and purges (every entry should be a
 * hit). Before the log's history was kept (commit b280f2d), the issue measured 0 of 99
 * rows and 0 of 100 URLs. Writes `<out>.json` and `<out>.md` (default bench/results/restart).
 */
import { once } from "node:events";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { loadavg } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { makeTmpDir, ROOT, runBench, type Server, startServer, stopAll } from "./lib/processes.ts";
import { benchHead, describeHead, writeResults } from "./lib/results.ts";
import { commandLine, fail, positiveInt, readFlags } from "./lib/settings.ts";

const options = readFlags(() => {
  const { values } = parseArgs({
    options: {
      entries: { type: "string", default: "1000" },
      written: { type: "string", default: "0.01" },
      out: { type: "string", default: "bench/results/restart" },
    },
  });
  const written = Number(values.written);
  if (!(written > 0 && written < 1))
    fail(`--written: expected a fraction between 0 and 1, got ${values.written}`);
  return { entries: positiveInt("entries", values.entries), written, out: values.out };
});

const BIN = join(ROOT, "bin", "edgecache.js");

interface Outcome {
  /** Entries cached before the stop, and how many the writes and purges named. */
  cached: number;
  concerned: number;
  /** After the restart: untouched entries served from the cache file. */
  untouchedHits: number;
  /** Concerned entries served from the cache (each is stale: must be 0). */
  concernedHits: number;
  /** Concerned entries whose reply after the restart is not the new value. */
  wrong: number;
}

/** Starts the CLI in `dir`; the URL it prints on the line `label`. */
function cli(dir: string, argv: string[], label: RegExp): Promise<Server> {
  return startServer({
    name: argv[0]!,
    argv: [BIN, ...argv, "--port", "0"],
    cwd: dir,
    env: { EDGECACHE_LOG_LEVEL: "silent" },
    lastResort: "SIGKILL",
    readyUrl: (line) => label.exec(line)?.[1],
  });
}

async function get(url: string): Promise<{ hit: boolean; body: string; status: number }> {
  const res = await fetch(url);
  const body = await res.text();
  return { hit: /hit/.test(res.headers.get("cache-status") ?? ""), body, status: res.status };
}

async function post(url: string, body: unknown, method = "POST"): Promise<void> {
  const res = await fetch(url, {
    method,
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  if (!res.ok) throw new Error(`[bench] ${method} ${url}: ${res.status} ${await res.text()}`);
}

/** The data API: rows read one by one, some PATCHed, an unrelated prefix purged, restart. */
async function dataApi(write: boolean): Promise<Outcome> {
  const dir = makeTmpDir();
  const DATA = /data API:\s+(http:\/\/[^/\s]+)/;
  let node = await cli(dir, ["serve"], DATA);
  const ids: string[] = [];
  // Pages of the API's largest limit, until the demo database or --entries runs out.
  while (ids.length < options.entries) {
    const page = `${node.url}/v1/users?limit=1000&offset=${ids.length}&sort=id`;
    const rows = JSON.parse((await get(page)).body).data as { id: string }[];
    ids.push(...rows.slice(0, options.entries - ids.length).map((u) => u.id));
    if (rows.length < 1000) break;
  }
  for (const id of ids) await get(`${node.url}/v1/users/${id}`);
  const every = Math.round(1 / options.written);
  const changed = new Set(write ? ids.filter((_, i) => i % every === 0) : []);
  for (const id of changed)
    await post(`${node.url}/v1/users/${id}`, { lastName: "Restarted" }, "PATCH");
  if (write) await post(`${node.url}/_edgecache/invalidate`, { prefix: "GET /nothing/" });
  await stopAll();
  node = await cli(dir, ["serve"], DATA);
  const out: Outcome = {
    cached: ids.length,
    concerned: changed.size,
    untouchedHits: 0,
    concernedHits: 0,
    wrong: 0,
  };
  for (const id of ids) {
    const r = await get(`${node.url}/v1/users/${id}`);
    if (!changed.has(id)) {
      if (r.hit) out.untouchedHits++;
      continue;
    }
    if (r.hit) out.concernedHits++;
    if (JSON.parse(r.body).lastName !== "Restarted") out.wrong++;
  }
  await stopAll();
  return out;
}

/** The proxy: URLs cached, an unrelated prefix and some URLs purged, restart. */
async function proxy(write: boolean): Promise<Outcome> {
  let version = 1;
  const origin = createServer((req, res) => {
    res.writeHead(200, { "cache-control": "max-age=3600", "content-type": "text/plain" });
    res.end(`${req.url} v${version}`);
  });
  origin.listen(0, "127.0.0.1");
  await once(origin, "listening");
  const originUrl = `http://127.0.0.1:${(origin.address() as AddressInfo).port}`;
  const dir = makeTmpDir();
  const PROXY = /proxy:\s+(http:\/\/[^/\s]+)/;
  const argv = ["proxy", "--origin", originUrl];
  let node = await cli(dir, argv, PROXY);
  const paths = Array.from({ length: options.entries }, (_, i) => `/items/${i}`);
  for (const path of paths) await get(`${node.url}${path}`);
  const every = Math.round(1 / options.written);
  const purged = new Set(write ? paths.filter((_, i) => i % every === 0) : []);
  if (write) {
    version = 2;
    await post(`${node.url}/_edgecache/purge`, { prefix: "/nothing/" });
    // One purge a URL, as a publishing hook sends them: each its own record of the log,
    // so past the write fence's 8,192 the oldest are judged by its summary.
    for (const path of purged) await post(`${node.url}/_edgecache/purge`, { urls: [path] });
  }
  await stopAll();
  node = await cli(dir, argv, PROXY);
  const out: Outcome = {
    cached: paths.length,
    concerned: purged.size,
    untouchedHits: 0,
    concernedHits: 0,
    wrong: 0,
  };
  for (const path of paths) {
    const r = await get(`${node.url}${path}`);
    if (!purged.has(path)) {
      if (r.hit) out.untouchedHits++;
      continue;
    }
    if (r.hit) out.concernedHits++;
    if (r.body !== `${path} v2`) out.wrong++;
  }
  await stopAll();
  origin.close();
  return out;
}

const command = commandLine("bench:restart");
const started = Date.now();
const loadavgBefore = loadavg();
const runs: { mode: string; control: Outcome; restart: Outcome }[] = [];

await runBench(async () => {
  for (const [mode, run] of [
    ["data API (edgecache serve)", dataApi],
    ["proxy (edgecache proxy)", proxy],
  ] as const) {
    console.log(`${mode}:`);
    const control = await run(false);
    const restart = await run(true);
    runs.push({ mode, control, restart });
    console.log(`  control: ${share(control)}; with writes and purges: ${share(restart)}`);
  }
  const head = benchHead(command, started, loadavgBefore);
  const path = writeResults(options.out, { ...head, options, runs }, markdown(head));
  console.log(`wrote ${path}.json and .md`);
  if (runs.some(({ restart: r }) => r.concernedHits > 0 || r.wrong > 0)) {
    throw new Error("[bench] an entry a write or purge concerned was served after the restart");
  }
});

function untouched(o: Outcome): number {
  return o.cached - o.concerned;
}

function share(o: Outcome): string {
  const pct = ((100 * o.untouchedHits) / Math.max(1, untouched(o))).toFixed(1);
  return `${o.untouchedHits} of ${untouched(o)} untouched entries hit (${pct}%), ${o.concernedHits} concerned served, ${o.wrong} wrong`;
}

function markdown(head: ReturnType<typeof benchHead>): string {
  const rows = runs.flatMap(({ mode, control, restart }) => [
    `| ${mode} | control: no write, no purge | ${control.cached} | 0 | ${share(control)} |`,
    `| ${mode} | ${options.written * 100}% written or purged, and a purge of /nothing/ | ${restart.cached} | ${restart.concerned} | ${share(restart)} |`,
  ]);
  return [
    "# One node restarted on its cache file",
    "",
    describeHead(head),
    "",
    "Command:",
    "",
    "```sh",
    command,
    "```",
    "",
    `Each mode runs the real CLI in a fresh folder: ${options.entries} entries cached (rows read one by one from the demo database; URLs of an origin that answers max-age=3600), then ${options.written * 100}% of them written (PATCH) or purged by URL and an unrelated prefix purged, then SIGTERM, a new process on the same cache file, and every entry read again. Target (issue 47): ≥ 99% of the untouched entries are hits, none of the concerned ones is served from the cache.`,
    "",
    "| mode | before the stop | cached | concerned | after the restart |",
    "| --- | --- | --- | --- | --- |",
    ...rows,
    "",
    "Before the log's history was kept (b280f2d), the issue measured 0 of 99 untouched rows and 0 of 100 URLs after one write or one unrelated purge.",
    "",
  ].join("\n");
}
