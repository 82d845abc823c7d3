/**
 * What the data API's patch of one cached list page costs in CPU, by the write it follows,
 * against another checkout measured in the same run: the part of a write's cost that grows
 * with the pages it touches (an order inserted at the head of a status list shifts every
 * cached page of that status, some twenty-four in bench:writes' workload).
 *
 *   npm run bench:patch                          # this checkout alone
 *   npm run bench:patch -- --against ../before   # and that checkout, in turn: after ÷ before
 *   npm run bench:patch -- --rounds 9 --calls 40000 --out bench/results/patch-x
 *   npm run bench:patch -- --against ../before --in-process   # both in one process, in turn
 *
 * Each round runs one process per checkout, one after the other (which goes first changes
 * each round). With `--in-process`, one process loads both checkouts' src/ side by side
 * (each its own modules, cache and copy of the database) and calls each in turn, a burst of
 * `--calls` at a time: on a machine whose speed drifts from second to second (a shared VM),
 * both then see the same drift, and each round's ratio is steadier. A process opens a
 * copy of the workload's database (bench/workload/, 10,000 users and 50,000 orders) with a
 * memory tier and the in-process log, caches one page of
 * orders by status (`/v1/orders?status=pending&sort=-createdAt&offset=100`, twenty rows and
 * two on each side), and calls the patch the data API gave the cache (`addWriteHooks`) on
 * that page again and again, `--calls` times for each write after as many to warm up:
 * - an order inserted before the window (the page shifts by a row, the row that enters taken
 *   from the page's own margin);
 * - an update of an order in the window that keeps its place (`total`).
 * Its CPU (`process.cpuUsage`, user + system) over those calls, per call. Storing the
 * patched page is not included, nor is the write. The process imports the checkout's own
 * src/ (`--against` takes any checkout since 2755dd3, with node_modules linked).
 */
import { spawnSync } from "node:child_process";
import { copyFileSync, existsSync, rmSync } from "node:fs";
import { loadavg } from "node:os";
import { join, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { parseArgs } from "node:util";
import { makeTmpDir, ROOT, runBench } from "./lib/processes.ts";
import { benchHead, describeHead, writeResults } from "./lib/results.ts";
import { commandLine, fail, positiveInt, readFlags } from "./lib/settings.ts";
import { prepareDatabase, quantile, round } from "./workload/workload.ts";

const PAGE = "/v1/orders?status=pending&sort=-createdAt&offset=100";
const KINDS = ["insert before the window", "update in the window"] as const;
type Kind = (typeof KINDS)[number];
type Figures = Record<Kind, number>;
/** One write's figures over the rounds: medians in us a call, and each round's ratio. */
interface Summary {
  kind: Kind;
  thisUs: number;
  againstUs: number | undefined;
  ratio: number | undefined;
  ratios: number[];
}

const { values } = parseArgs({
  options: {
    against: { type: "string" },
    rounds: { type: "string", default: "7" },
    calls: { type: "string", default: "20000" },
    out: { type: "string", default: "bench/results/patch" },
    "in-process": { type: "boolean", default: false },
    child: { type: "string" },
    db: { type: "string" },
    user: { type: "string" },
  },
});

if (values.child !== undefined) {
  const patching = await prepare(values.child, values.db!, values.user!);
  process.stdout.write(`${JSON.stringify(measure(patching, Number(values.calls)))}\n`);
  process.exit(0);
}

const options = readFlags(() => ({
  against: values.against && resolve(values.against),
  rounds: positiveInt("rounds", values.rounds!),
  calls: positiveInt("calls", values.calls!),
  out: values.out!,
  inProcess: values["in-process"]!,
}));
if (options.inProcess && !options.against) fail("--in-process: expected --against <checkout>");

await runBench(async () => {
  const started = Date.now();
  const loadBefore = loadavg();
  const { template, data } = prepareDatabase({ users: 10_000, orders: 50_000, seed: 7 }, (l) =>
    console.log(l),
  );
  const codes = [
    { code: "this", root: ROOT },
    ...(options.against ? [{ code: "against", root: options.against }] : []),
  ];
  const user = data.users[0]!.id;
  // With --in-process, each checkout's patch, prepared once here on its own copy.
  const prepared = new Map<string, Patching>();
  if (options.inProcess) {
    for (const { root } of codes) prepared.set(root, await prepare(root, copyOf(template), user));
  }
  const runs: { round: number; code: string; figures: Figures }[] = [];
  for (let round = 0; round < options.rounds; round++) {
    const order = round % 2 === 0 ? codes : [...codes].reverse();
    for (const { code, root } of order) {
      const here = prepared.get(root);
      const figures = here ? measure(here, options.calls) : runChild(root, template, user);
      runs.push({ round, code, figures });
      console.log(`round ${round + 1}, ${code}: ${describe(figures)}`);
    }
  }
  const summary = KINDS.map((kind): Summary => {
    const of = (code: string) => runs.filter((r) => r.code === code).map((r) => r.figures[kind]);
    const ratios = options.against
      ? [...Array(options.rounds).keys()].map((i) => of("this")[i]! / of("against")[i]!)
      : [];
    return {
      kind,
      thisUs: round(quantile(of("this"), 0.5), 2),
      againstUs: options.against ? round(quantile(of("against"), 0.5), 2) : undefined,
      ratio: ratios.length > 0 ? round(quantile(ratios, 0.5), 2) : undefined,
      ratios: ratios.map((r) => round(r, 2)),
    };
  });
  const head = benchHead(commandLine("bench:patch"), started, loadBefore);
  const json = { ...head, page: PAGE, calls: options.calls, rounds: options.rounds, summary, runs };
  const out = writeResults(options.out, json, markdown(head, summary));
  console.log(`wrote ${out}.json and .md`);
});

function copyOf(template: string): string {
  const db = join(makeTmpDir(), "patch.db");
  copyFileSync(template, db);
  return db;
}

function runChild(root: string, template: string, user: string): Figures {
  const db = copyOf(template);
  try {
    const script = join(ROOT, "bench", "patch.ts");
    const args = ["--import", "tsx", script, "--child", root, "--db", db, "--user", user];
    const run = spawnSync(process.execPath, [...args, "--calls", String(options.calls)], {
      cwd: ROOT,
      encoding: "utf8",
    });
    if (run.status !== 0) fail(`the run in ${root} failed:\n${run.stderr}`);
    return JSON.parse(run.stdout.trim().split("\n").pop()!) as Figures;
  } finally {
    for (const suffix of ["", "-wal", "-shm"]) rmSync(db + suffix, { force: true });
  }
}

/** One checkout's patch of one cached page, called `calls` times for a write. */
type Patching = (kind: Kind, calls: number) => void;

/** The checkout at `root`'s data API on `db`, its page cached, and its patch hook. */
async function prepare(root: string, db: string, user: string): Promise<Patching> {
  // A module where this checkout holds it (older checkouts hold some elsewhere).
  const src = (...paths: string[]) => {
    const path = paths.find((p) => existsSync(join(root, "src", p))) ?? paths[0]!;
    return import(pathToFileURL(join(root, "src", path)).href);
  };
  const [{ createDataApi }, { Cache }, { requestKey }, { demoViews }, logs, sources, stores] =
    await Promise.all([
      src("app/data-api.ts"),
      src("core/cache/index.ts"),
      src("core/data/keys.ts", "core/keys.ts"),
      src("demo/seed.ts"),
      src("core/change-log/in-process.ts", "log/in-process.ts"),
      src("sources/sqlite.ts"),
      src("stores/memory.ts"),
    ]);
  const cache = new Cache({
    tiers: [stores.memoryStore()],
    log: logs.localChangeLog(),
    policy: "exact",
    rehydrate: false,
  });
  type Patch = (key: string, entry: unknown, events: unknown[], peek: unknown) => unknown;
  let patch: Patch | undefined;
  const addWriteHooks = cache.addWriteHooks.bind(cache);
  cache.addWriteHooks = (hooks: { patch?: Patch }) => {
    patch ??= hooks.patch;
    return addWriteHooks(hooks);
  };
  const api = await createDataApi({
    source: sources.sqliteSource({ path: db, views: demoViews }),
    cache,
  });
  const reply = await api.app.request(PAGE);
  const rows = ((await reply.json()) as { data: Record<string, unknown>[] }).data;
  const url = new URL(`http://bench${PAGE}`);
  const key = requestKey(url.pathname, url.search);
  const entry = cache.peek(key);
  if (!patch || !entry) fail("no patch hook, or the page is not cached");
  const peek = (k: string) => cache.peek(k);
  const held = rows[4]!;
  const events: Record<Kind, unknown[]> = {
    "insert before the window": [
      {
        table: "orders",
        op: "insert",
        new: {
          id: "o-bench",
          userId: user,
          total: 1,
          status: "pending",
          createdAt: "2027-01-01T00:00:00Z",
          version: 1,
        },
      },
    ],
    "update in the window": [
      {
        table: "orders",
        op: "update",
        old: held,
        new: { ...held, total: Number(held.total) + 1, version: Number(held.version) + 1 },
      },
    ],
  };
  return (kind, calls) => {
    for (let i = 0; i < calls; i++) {
      if (!patch!(key, entry, events[kind], peek)) fail(`${kind}: the page was not patched`);
    }
  };
}

/** Each write's patch, called `calls` times after as many to warm up: CPU per call, us. */
function measure(patching: Patching, calls: number): Figures {
  const figures = {} as Figures;
  for (const kind of KINDS) {
    patching(kind, calls); // warm: V8 compiles the path
    const before = process.cpuUsage();
    patching(kind, calls);
    const { user: u, system } = process.cpuUsage(before);
    figures[kind] = (u + system) / calls;
  }
  return figures;
}

function describe(f: Figures): string {
  return KINDS.map((k) => `${k} ${f[k].toFixed(2)} us`).join(", ");
}

function markdown(head: ReturnType<typeof benchHead>, summary: Summary[]): string {
  const rows = summary
    .map(
      (s) =>
        `| ${s.kind} | ${s.thisUs} | ${s.againstUs ?? "–"} | ${s.ratio ?? "–"} | ${s.ratios.join(", ") || "–"} |`,
    )
    .join("\n");
  return `# The data API's patch of one cached page

${describeHead(head)}

${options.inProcess ? "One process holding both checkouts side by side, each called in turn, a burst at a time" : "A process per checkout and round, one after the other"} (bench/patch.ts): the patch the data API gives the cache, called ${options.calls.toLocaleString("en-US")} times on one cached page (\`${PAGE}\`) for each write after as many to warm up; its CPU per call. The median of ${options.rounds} rounds, and each round's ratio.

| write | this checkout, us a call | --against | this ÷ against, median | each round |
| --- | ---: | ---: | ---: | --- |
${rows}

Command:

\`\`\`sh
${head.command}
\`\`\`
`;
}
