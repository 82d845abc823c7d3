/**
 * The flood benchmark: what anonymous GETs of distinct junk URLs cost a running edgecache
 * (the data API over the demo database), and what a large invalidation costs the requests
 * running beside it.
 *
 *   npm run bench:flood                 # 500,000 junk URLs, then an invalidation of 100,000 keys
 *   npm run bench:flood -- --quick      # 50,000 and 10,000: about a minute
 *
 * 1. Flood: `--urls` distinct URLs, a third each of made-up ids (`/v1/users/nope-N`, 404),
 *    item URLs with a junk parameter (`/v1/users/<id>?junk=N`) and lists with a distinct
 *    filter value (`/v1/users?firstName=junk-N`, an empty list: a real entry). Before and
 *    after: the server's RSS, the cache file's size (with its WAL), the dependency index,
 *    each tier's entries and bytes, cached 404s; and whether a real entry read meanwhile
 *    stayed a hit.
 * 2. Restart: SIGTERM, then the time to ready and the RSS of a new process on the same files.
 * 3. Invalidation: `--keys` list entries under one prefix, then one prefix invalidation of
 *    them through the admin API while `--probes` clients read (hits and misses); their
 *    latency then against the same reads with no invalidation, measured just before.
 *
 * The limits are the defaults unless flags set them (written to edgecache.config.json):
 * --memory-bytes, --memory-entries, --disk-bytes, --disk-entries, --not-found. `--bin` runs
 * another checkout's bin/edgecache.js (with --no-config for one that predates these keys).
 * `--heap-limit <MB>` runs the server with node's --max-old-space-size.
 * Writes `<out>.json` and `<out>.md` (default bench/results/flood).
 */
import { existsSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { Agent, request } from "node:http";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import type { MemoryFigures, MemoryProbe } from "./lib/memory-probe.ts";
import { freePort, makeTmpDir, ROOT, runBench, startServer } from "./lib/processes.ts";
import { describeCode, gitState, writeResults } from "./lib/results.ts";
import { commandLine, positiveInt, readFlags } from "./lib/settings.ts";

const flags = readFlags(() => {
  const { values } = parseArgs({
    options: {
      urls: { type: "string" },
      keys: { type: "string" },
      connections: { type: "string", default: "32" },
      probes: { type: "string", default: "4" },
      "memory-bytes": { type: "string" },
      "memory-entries": { type: "string" },
      "disk-bytes": { type: "string" },
      "disk-entries": { type: "string" },
      "not-found": { type: "string" },
      "heap-limit": { type: "string" },
      bin: { type: "string", default: join(ROOT, "bin", "edgecache.js") },
      config: { type: "boolean", default: true },
      out: { type: "string", default: "bench/results/flood" },
      quick: { type: "boolean", default: false },
    },
    allowNegative: true,
  });
  const int = (name: keyof typeof values) => {
    const v = values[name];
    return typeof v === "string" ? positiveInt(name, v) : undefined;
  };
  return {
    urls: positiveInt("urls", values.urls ?? (values.quick ? "50000" : "500000")),
    keys: positiveInt("keys", values.keys ?? (values.quick ? "10000" : "100000")),
    connections: positiveInt("connections", values.connections),
    probes: positiveInt("probes", values.probes),
    limits: {
      memory: { maxBytes: int("memory-bytes"), maxEntries: int("memory-entries") },
      disk: { maxBytes: int("disk-bytes"), maxEntries: int("disk-entries") },
      notFound: { maxEntries: int("not-found") },
    },
    bin: resolve(values.bin),
    config: values.config,
    out: values.out,
    heapLimit: int("heap-limit"),
  };
});

/** The product's defaults, for the report (src/stores/*.ts, src/core/cache.ts). */
const DEFAULTS = {
  memory: { maxBytes: 50 * 1024 * 1024, maxEntries: 100_000 },
  disk: { maxBytes: 256 * 1024 * 1024, maxEntries: 100_000 },
  notFound: { maxEntries: 10_000 },
};

/** process.memoryUsage() of the server in MB, as found and after a full collection. */
interface Memory {
  found: Megabytes;
  afterGc: Megabytes;
}

type Megabytes = { [K in keyof MemoryFigures as `${K}MB`]: number };

interface Snapshot {
  rssMB: number;
  memory: Memory;
  fileMB: number;
  indexedKeys: number;
  tiers: { name: string; entries?: number; bytes?: number; evictions?: number }[];
  notFound?: { entries: number; maxEntries: number; evictions: number };
}

interface Latency {
  requests: number;
  p50: number;
  p99: number;
  max: number;
}

const agent = new Agent({ keepAlive: true, maxSockets: flags.connections + flags.probes + 2 });

/** One request; resolves with the status and the Cache-Status header, body discarded. */
function send(
  base: string,
  path: string,
  init: { method?: string; body?: string } = {},
): Promise<{ status: number; cache: string; body: string }> {
  return new Promise((done, fail) => {
    const req = request(
      `${base}${path}`,
      {
        agent,
        method: init.method ?? "GET",
        headers: init.body ? { "content-type": "application/json" } : {},
      },
      (res) => {
        let body = "";
        res.setEncoding("utf8");
        res.on("data", (c: string) => (body += c));
        res.on("end", () =>
          done({
            status: res.statusCode ?? 0,
            cache: String(res.headers["cache-status"] ?? ""),
            body,
          }),
        );
        res.on("error", fail);
      },
    );
    req.on("error", fail);
    req.end(init.body);
  });
}

/** Sends `n` requests, `connections` at a time; counts the statuses. */
async function pool(
  n: number,
  connections: number,
  path: (i: number) => string,
  each?: (i: number) => Promise<void>,
): Promise<Record<number, number>> {
  const statuses: Record<number, number> = {};
  let next = 0;
  await Promise.all(
    Array.from({ length: connections }, async () => {
      while (next < n) {
        const i = next++;
        const { status } = await send(base, path(i));
        statuses[status] = (statuses[status] ?? 0) + 1;
        await each?.(i);
      }
    }),
  );
  return statuses;
}

function rssMB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return m ? Math.round(Number(m[1]) / 1024) : Number.NaN;
}

function fileMB(dir: string): number {
  let bytes = 0;
  for (const f of ["edgecache.cache.db", "edgecache.cache.db-wal"]) {
    const p = join(dir, f);
    if (existsSync(p)) bytes += statSync(p).size;
  }
  return Math.round((bytes / 1024 / 1024) * 10) / 10;
}

const MB = 1024 * 1024;

function megabytes(f: MemoryFigures): Megabytes {
  const mb = (b: number) => Math.round((b / MB) * 10) / 10;
  return {
    rssMB: mb(f.rss),
    heapTotalMB: mb(f.heapTotal),
    heapUsedMB: mb(f.heapUsed),
    externalMB: mb(f.external),
    arrayBuffersMB: mb(f.arrayBuffers),
  };
}

/**
 * The server's memory from inside it (bench/lib/memory-probe.ts): heap used, heap reserved,
 * memory outside the heap, as found and after a full collection. Garbage is what the
 * collection frees; what RSS keeps beyond the collected heap and the external memory is
 * memory the runtime and the allocator hold on to after freeing it.
 */
async function memory(pid: number): Promise<Memory> {
  rmSync(probeFile, { force: true });
  process.kill(pid, "SIGUSR2");
  const until = performance.now() + 60_000;
  while (!existsSync(probeFile)) {
    if (performance.now() > until) throw new Error("[bench] the memory probe did not answer");
    await sleep(20);
  }
  const probe = JSON.parse(readFileSync(probeFile, "utf8")) as MemoryProbe;
  return { found: megabytes(probe.before), afterGc: megabytes(probe.afterGc) };
}

async function snapshot(pid: number): Promise<Snapshot> {
  const stats = JSON.parse((await send(base, "/_edgecache/stats")).body) as Snapshot;
  return {
    rssMB: rssMB(pid),
    memory: await memory(pid),
    fileMB: fileMB(dir),
    indexedKeys: stats.indexedKeys,
    tiers: stats.tiers.map(({ name, entries, bytes, evictions }) => ({
      name,
      entries,
      bytes,
      evictions,
    })),
    notFound: stats.notFound,
  };
}

async function start(): Promise<{ url: string; pid: number; readyMs: number }> {
  const port = await freePort();
  const began = performance.now();
  const server = await startServer({
    name: "edgecache",
    // --expose-gc and the probe: heap figures as found and after a full collection.
    argv: [
      "--expose-gc",
      ...(flags.heapLimit ? [`--max-old-space-size=${flags.heapLimit}`] : []),
      ...PROBE,
      flags.bin,
      "serve",
      "--port",
      String(port),
    ],
    env: { EDGECACHE_MEMORY_PROBE: probeFile },
    cwd: dir,
    readyUrl: (line) => /data API:\s+(http:\/\/\S+)\/v1\//.exec(line)?.[1],
  });
  return { ...server, readyMs: Math.round(performance.now() - began) };
}

async function stop(pid: number): Promise<void> {
  process.kill(pid, "SIGTERM");
  while (existsSync(`/proc/${pid}`) && !/\) Z/.test(readFileSync(`/proc/${pid}/stat`, "utf8"))) {
    await new Promise((r) => setTimeout(r, 50));
  }
}

function quantiles(samples: number[]): Latency {
  const sorted = [...samples].sort((a, b) => a - b);
  const q = (p: number) => sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] ?? 0;
  const ms = (v: number) => Math.round(v * 100) / 100;
  return { requests: sorted.length, p50: ms(q(0.5)), p99: ms(q(0.99)), max: ms(q(1)) };
}

/**
 * Reads by `flags.probes` clients until `until` resolves: three hits of warm items to one
 * miss (a list never asked before). Returns each read's start and duration.
 */
async function probe(hot: string[], until: Promise<unknown>): Promise<[number, number][]> {
  let done = false;
  void until.then(() => (done = true));
  const samples: [number, number][] = [];
  let n = 0;
  await Promise.all(
    Array.from({ length: flags.probes }, async () => {
      while (!done) {
        const i = n++;
        const path = i % 4 === 3 ? `/v1/orders?status=probe-${i}` : hot[i % hot.length]!;
        const t = performance.now();
        await send(base, path);
        samples.push([t, performance.now() - t]);
      }
    }),
  );
  return samples;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const dir = makeTmpDir();
const probeFile = join(dir, "memory.json");
/** The probe is TypeScript: tsx's loader goes first (resolved here: the server runs in `dir`). */
const PROBE = [
  "--import",
  import.meta.resolve("tsx"),
  "--import",
  join(ROOT, "bench", "lib", "memory-probe.ts"),
];
let base = "";

await runBench(async () => {
  const command = commandLine("bench:flood");
  const limits = {
    memory: { ...DEFAULTS.memory, ...defined(flags.limits.memory) },
    disk: { ...DEFAULTS.disk, ...defined(flags.limits.disk) },
    notFound: { ...DEFAULTS.notFound, ...defined(flags.limits.notFound) },
  };
  if (flags.config) writeFileSync(join(dir, "edgecache.config.json"), JSON.stringify(limits));

  let server = await start();
  base = server.url;
  const firstStartMs = server.readyMs;
  const users = (
    JSON.parse((await send(base, "/v1/users?limit=100")).body) as {
      data: { id: string }[];
    }
  ).data.map((u) => u.id);
  const hot = users.map((id) => `/v1/users/${id}`);
  for (const path of hot) await send(base, path);
  const before = await snapshot(server.pid);
  console.log("before the flood:", JSON.stringify(before));

  // 1. The flood; a real entry is read every 1,000 requests.
  const kinds = [
    (i: number) => `/v1/users/nope-${i}`,
    (i: number) => `${hot[i % hot.length]}?junk=${i}`,
    (i: number) => `/v1/users?firstName=junk-${i}`,
  ];
  const memoryDuring: ({ sent: number } & Memory)[] = [];
  let realHits = 0;
  let realReads = 0;
  const floodStart = performance.now();
  const statuses = await pool(
    flags.urls,
    flags.connections,
    (i) => kinds[i % 3]!(Math.floor(i / 3)),
    async (i) => {
      if (i % 1000 !== 0) return;
      realReads++;
      if ((await send(base, hot[0]!)).cache.includes("hit")) realHits++;
      if (i % 100_000 !== 0 || i === 0) return;
      const m = await memory(server.pid);
      memoryDuring.push({ sent: i, ...m });
      console.log(
        `  ${i} sent: RSS ${m.found.rssMB} MB, heap used ${m.found.heapUsedMB} MB, after a full collection ${m.afterGc.heapUsedMB} MB (RSS ${m.afterGc.rssMB} MB)`,
      );
    },
  );
  const floodSeconds = Math.round((performance.now() - floodStart) / 100) / 10;
  await sleep(500);
  const after = await snapshot(server.pid);
  console.log("after the flood:", JSON.stringify(after));

  // 2. A clean restart on the same files.
  await stop(server.pid);
  server = await start();
  base = server.url;
  const restart = {
    readyMs: server.readyMs,
    rssMB: rssMB(server.pid),
    fileMB: fileMB(dir),
    memory: await memory(server.pid),
  };
  console.log("after a restart:", JSON.stringify(restart));

  // 3. A prefix invalidation of `keys` entries while other requests run.
  for (const path of hot) await send(base, path);
  await pool(flags.keys, flags.connections, (i) => `/v1/orders?status=inv-${i}`);
  await sleep(500);
  const filled = await snapshot(server.pid);
  const baselineSamples = await probe(hot, sleep(3000));
  let invalidated = 0;
  let invalidationMs = 0;
  let window: [number, number] = [0, 0];
  const invalidation = (async () => {
    await sleep(500);
    const t = performance.now();
    const r = await send(base, "/_edgecache/invalidate", {
      method: "POST",
      body: JSON.stringify({ prefix: "GET /v1/orders?status=inv-" }),
    });
    window = [t, performance.now()];
    invalidationMs = Math.round(window[1] - t);
    invalidated = (JSON.parse(r.body) as { invalidated: number }).invalidated;
    await sleep(500);
  })();
  const duringSamples = (await probe(hot, invalidation)).filter(
    ([t]) => t >= window[0] && t <= window[1],
  );
  const baseline = quantiles(baselineSamples.map(([, ms]) => ms));
  const during = quantiles(duringSamples.map(([, ms]) => ms));
  const cleared = await snapshot(server.pid);

  const result = {
    date: new Date().toISOString(),
    command,
    git: gitState(),
    bin: flags.bin,
    heapLimitMB: flags.heapLimit ?? "node's default",
    limits: flags.config ? limits : "the binary's own defaults (no config)",
    flood: {
      urls: flags.urls,
      connections: flags.connections,
      seconds: floodSeconds,
      statuses,
      realEntryHits: `${realHits} of ${realReads}`,
      memory: memoryDuring,
    },
    firstStartMs,
    before,
    after,
    restart,
    invalidation: {
      keys: flags.keys,
      indexedBefore: filled.indexedKeys,
      invalidated,
      ms: invalidationMs,
      indexedAfter: cleared.indexedKeys,
      probes: flags.probes,
      baseline,
      during,
      p99Ratio: Math.round((during.p99 / baseline.p99) * 100) / 100,
    },
    node: process.version,
  };
  const path = writeResults(flags.out, result, markdown(result));
  console.log(`\n${markdown(result)}\nwrote ${path}.json and .md`);
});

function defined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

function memoryRows(r: {
  before: Snapshot;
  after: Snapshot;
  flood: { memory: ({ sent: number } & Memory)[] };
  restart: { memory: Memory };
}): string {
  const row = (label: string, m: Memory) =>
    `| ${label} | ${m.found.rssMB} | ${m.found.heapUsedMB} | ${m.afterGc.heapUsedMB} | ${m.afterGc.heapTotalMB} | ${m.afterGc.externalMB} | ${m.afterGc.rssMB} |`;
  return [
    row("before the flood", r.before.memory),
    ...r.flood.memory.map((m) => row(`${m.sent.toLocaleString("en-US")} sent`, m)),
    row("after the flood", r.after.memory),
    row("after a restart", r.restart.memory),
  ].join("\n");
}

function markdown(r: {
  date: string;
  command: string;
  git: ReturnType<typeof gitState>;
  limits: unknown;
  heapLimitMB: number | string;
  flood: {
    urls: number;
    seconds: number;
    statuses: Record<number, number>;
    realEntryHits: string;
    memory: ({ sent: number } & Memory)[];
  };
  firstStartMs: number;
  before: Snapshot;
  after: Snapshot;
  restart: { readyMs: number; rssMB: number; fileMB: number; memory: Memory };
  invalidation: {
    keys: number;
    indexedBefore: number;
    invalidated: number;
    ms: number;
    indexedAfter: number;
    probes: number;
    baseline: Latency;
    during: Latency;
    p99Ratio: number;
  };
}): string {
  const tier = (s: Snapshot, name: string) => s.tiers.find((t) => t.name === name);
  const row = (label: string, s: Snapshot) => {
    const m = tier(s, "memory");
    const d = tier(s, "sqlite");
    const mb = (b?: number) => (b === undefined ? "-" : (b / 1024 / 1024).toFixed(1));
    return `| ${label} | ${s.rssMB} | ${s.fileMB} | ${s.indexedKeys.toLocaleString("en-US")} | ${m?.entries?.toLocaleString("en-US")} (${mb(m?.bytes)} MB) | ${d?.entries?.toLocaleString("en-US")} (${mb(d?.bytes)} MB) | ${s.notFound?.entries.toLocaleString("en-US") ?? "-"} |`;
  };
  const inv = r.invalidation;
  const lat = (l: Latency) => `${l.requests} | ${l.p50} | ${l.p99} | ${l.max}`;
  const statuses = Object.entries(r.flood.statuses)
    .map(([s, n]) => `${n.toLocaleString("en-US")} × ${s}`)
    .join(", ");
  return `# Flood of junk URLs, and a large invalidation

${r.date}, ${describeCode(r.git)}. Limits: \`${JSON.stringify(r.limits)}\`. Server heap limit (--max-old-space-size): ${r.heapLimitMB}.

**Flood**: ${r.flood.urls.toLocaleString("en-US")} distinct URLs in ${r.flood.seconds} s (${statuses}): made-up ids, item URLs with a junk parameter, lists with a distinct filter value. A real entry read every 1,000 requests was a hit ${r.flood.realEntryHits} times.

| | RSS MB | cache file MB (with WAL) | indexed keys | memory tier entries | cache file entries | cached 404s |
| --- | --- | --- | --- | --- | --- | --- |
${row("before", r.before)}
${row("after", r.after)}

**Memory** of the server (process.memoryUsage() inside it, in MB), as found and after a full collection (\`gc()\` twice, with a turn between for finalizers): what the collection frees is garbage; what RSS holds beyond the collected heap's reservation and the memory outside it is kept by the runtime and the allocator after being freed.

| | RSS | heap used | heap used after a full collection | heap reserved after it | outside the heap (external) | RSS after it |
| --- | --- | --- | --- | --- | --- | --- |
${memoryRows(r)}

**Restart** on the same files: ready in ${r.restart.readyMs} ms (the first start, which seeds the demo database, took ${r.firstStartMs} ms), RSS ${r.restart.rssMB} MB, cache file ${r.restart.fileMB} MB.

**Invalidation** of one prefix over ${inv.keys.toLocaleString("en-US")} list entries (${inv.indexedBefore.toLocaleString("en-US")} keys indexed): ${inv.invalidated.toLocaleString("en-US")} removed in ${inv.ms} ms; ${inv.indexedAfter.toLocaleString("en-US")} keys indexed after. Reads by ${inv.probes} clients beside it (3 hits to 1 miss), in ms:

| | requests | p50 | p99 | max |
| --- | --- | --- | --- | --- |
| no invalidation (just before) | ${lat(inv.baseline)} |
| during the invalidation | ${lat(inv.during)} |

p99 during / p99 without: **${inv.p99Ratio}**.

Command:

\`\`\`sh
${r.command}
\`\`\`
`;
}
