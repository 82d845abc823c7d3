/**
 * Learned invalidation in proxy mode against TTL-only proxying, on the workload benchmark's
 * database, request sequence and stale-read oracle. The origin is edgecache's own data API
 * with its cache turned off (bench/servers/workload-server.ts, `--strategy no-cache`), whose
 * GET answers (rows and 404s) say `Cache-Control: public, max-age=<--max-age>`, so every
 * write's true effects are in the database and the oracle knows them. In front of it, `edgecache proxy`
 * as a user runs it: once as it is (a write invalidates its own URL only, the rest lives out
 * its max-age: TTL-only proxying), once with `--learn`. The sequence is cut into phases;
 * each reports stale reads, hit rate and the origin requests spent on learning per write.
 *
 *   npm run bench:learn                 # 2,000 users, 10,000 orders, 8,000 requests, 4 phases
 *   npm run bench:learn -- --quick      # 2,000 requests
 *
 * Flags: the workload's (--users n, --orders n, --requests n, --connections n, --ratios r
 * (one ratio), --seed n, --out path, --quick), --phases n, --max-age s.
 */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { templateOf } from "../src/app/proxy/learn/template.ts";
import {
  benchServer,
  freePort,
  makeTmpDir,
  ROOT,
  runBench,
  type Server,
  startServer,
} from "./lib/processes.ts";
import { describeCode, gitState, writeResults } from "./lib/results.ts";
import { commandLine, fail, positiveInt, readFlags } from "./lib/settings.ts";
import { readSmallWorkloadFlags, workloadFlags } from "./workload/flags.ts";
import { generateSequence } from "./workload/generate.ts";
import { StaleOracle } from "./workload/oracle.ts";
import { Client, readAll, runSequence } from "./workload/run.ts";
import { onFreshCopy, pctLabel, prepareDatabase, round } from "./workload/workload.ts";

const SETUPS = ["ttl-only", "learned", "learned-revalidate"] as const;
type SetupName = (typeof SETUPS)[number];
/** The learning setups, and the action their acting rules take. */
const ACTIONS: Partial<Record<SetupName, "invalidate" | "revalidate">> = {
  learned: "invalidate",
  "learned-revalidate": "revalidate",
};

const options = readFlags(() => {
  const { values } = parseArgs({
    options: {
      ...workloadFlags({ ratios: "0.05", out: "bench/results/learn" }),
      phases: { type: "string", default: "4" },
      "max-age": { type: "string", default: "600" },
    },
  });
  const flags = readSmallWorkloadFlags(values, { quick: "2000", full: "8000" });
  if (flags.writeRatios.length !== 1) fail(`--ratios: expected one ratio, got ${values.ratios}`);
  return {
    ...flags,
    writeRatio: flags.writeRatios[0]!,
    phases: positiveInt("phases", values.phases),
    maxAge: positiveInt("max-age", values["max-age"]),
    out: values.out,
  };
});

interface ProxyStats {
  hits: number;
  misses: number;
  learn?: {
    learnedInvalidations: number;
    learningRequests: number;
    learningChanged: number;
    revalidations: number;
  };
}

interface PhaseRecord {
  setup: SetupName;
  phase: number;
  /** Writes of the sequence before this phase ends. */
  writesSoFar: number;
  reads: number;
  writes: number;
  staleReads: number;
  hitRate: number;
  /** Origin requests the proxy made to learn, per write of the phase. */
  learningPerWrite: number;
  learnedInvalidations: number;
  /** Entries the proxy fetched again after writes (the revalidate action), per write. */
  revalidationsPerWrite: number;
  /** Rules acting at the end of the phase. */
  actingRules: number;
  errors: number;
  /** Stale reads by the read's route template, most first. */
  staleByTemplate: Record<string, number>;
  /** Reads that were not hits, by route template, most first. */
  missesByTemplate: Record<string, number>;
}

interface Rule {
  write: string;
  read: string;
  held: number;
  tested: number;
  acts: boolean;
}

runBench(async () => {
  const log = (line: string) => console.log(line);
  const command = commandLine("bench:learn");
  const started = Date.now();
  const { template, data } = prepareDatabase(options, log);
  const ops = generateSequence(data, {
    requests: options.requests,
    writeRatio: options.writeRatio,
    seed: options.seed,
  });
  const size = Math.ceil(ops.length / options.phases);
  const phases = Array.from({ length: options.phases }, (_, i) =>
    ops.slice(i * size, (i + 1) * size),
  );
  const records: PhaseRecord[] = [];
  const staleSamples: { setup: SetupName; phase: number; path: string }[] = [];
  /** Each learning setup's acting rules at the end of each phase. */
  const rules: Partial<Record<SetupName, Record<string, Rule[]>>> = {};
  for (const setup of SETUPS) {
    await onFreshCopy(template, setup, async (db) => {
      const origin = await startServer({
        name: `origin-${setup}`,
        argv: benchServer("workload-server.ts", [
          ...["--db", db, "--strategy", "no-cache", "--max-age", String(options.maxAge)],
        ]),
      });
      const action = ACTIONS[setup];
      const proxy = await startProxy(origin.url, action);
      const client = new Client(proxy.url, options.connections);
      try {
        // Warm: each read of the sequence once, as bench:workload does.
        const reads = [...new Set(ops.filter((o) => o.kind === "read").map((o) => o.path))];
        await readAll(client, reads, options.connections);
        const oracle = new StaleOracle({
          users: data.users.map((u) => u.id),
          orders: data.orders.map((o) => o.id),
        });
        let writesSoFar = 0;
        for (const [i, phase] of phases.entries()) {
          const before = await client.json<ProxyStats>("/_edgecache/stats");
          const o = await runSequence(client, phase, oracle, options.connections);
          const after = await client.json<ProxyStats>("/_edgecache/stats");
          const acting = action ? await actingRules(client) : [];
          writesSoFar += o.writes;
          const learned = (s: ProxyStats, k: keyof NonNullable<ProxyStats["learn"]>) =>
            s.learn?.[k] ?? 0;
          const record: PhaseRecord = {
            setup,
            phase: i + 1,
            writesSoFar,
            reads: o.reads,
            writes: o.writes,
            staleReads: o.staleReads,
            hitRate: round(o.hits / Math.max(1, o.reads), 4),
            learningPerWrite: round(
              (learned(after, "learningRequests") - learned(before, "learningRequests")) /
                Math.max(1, o.writes),
              2,
            ),
            learnedInvalidations:
              learned(after, "learnedInvalidations") - learned(before, "learnedInvalidations"),
            revalidationsPerWrite: round(
              (learned(after, "revalidations") - learned(before, "revalidations")) /
                Math.max(1, o.writes),
              2,
            ),
            actingRules: acting.filter((r) => r.acts).length,
            errors: o.errors,
            staleByTemplate: byTemplate(o.stalePaths),
            missesByTemplate: byTemplate(o.missPaths),
          };
          records.push(record);
          for (const sample of o.staleSamples) {
            staleSamples.push({ setup, phase: i + 1, path: sample.path });
          }
          if (action) {
            rules[setup] = { ...rules[setup], [`phase ${i + 1}`]: acting.filter((r) => r.acts) };
          }
          log(
            `${setup}, phase ${i + 1} (${writesSoFar} writes so far): stale ${record.staleReads}, ` +
              `hit rate ${(record.hitRate * 100).toFixed(1)}%, ${record.learningPerWrite} ` +
              `learning requests per write, ${record.actingRules} rules acting`,
          );
        }
      } finally {
        client.close();
      }
    });
  }

  const last = (setup: SetupName) => records.filter((r) => r.setup === setup).at(-1)!;
  const ttl = last("ttl-only");
  const verdict = (["learned", "learned-revalidate"] as const)
    .map((setup) => {
      const l = last(setup);
      const fewer = ttl.staleReads === 0 ? 1 : 1 - l.staleReads / ttl.staleReads;
      const hitGap = (ttl.hitRate - l.hitRate) * 100;
      return (
        `- **${setup}, stale reads, last phase** (target: at least 95% fewer than TTL-only): ` +
        `${l.staleReads} against ${ttl.staleReads}, ${(fewer * 100).toFixed(1)}% fewer ` +
        `(${fewer >= 0.95 ? "met" : "MISSED"}).\n` +
        `- **${setup}, hit rate, last phase** (target: within 5 points of TTL-only): ` +
        `${(l.hitRate * 100).toFixed(1)}% against ${(ttl.hitRate * 100).toFixed(1)}%, ` +
        `${hitGap.toFixed(1)} points below (${hitGap <= 5 ? "met" : "MISSED"}).`
      );
    })
    .join("\n");
  const git = gitState();
  const seconds = Math.round((Date.now() - started) / 1000);
  const md = `# Learned invalidation against TTL-only proxying

Command: \`${command}\` (${describeCode(git)}), ${new Date().toISOString()}, ${seconds} s.
${options.users} users, ${options.orders} orders; ${options.requests} requests at
${pctLabel(options.writeRatio)} writes from ${options.connections} keep-alive clients, in
${options.phases} phases of one sequence (seed ${options.seed}), after warming (each read of
the sequence once). Origin: edgecache's data API with its cache off, GET answers (rows
and 404s) \`Cache-Control: public, max-age=${options.maxAge}\`. Proxy: \`edgecache proxy\`, memory tier,
without \`--learn\` (ttl-only), with it (learned: acting rules invalidate) and with it and
\`learn.action: "revalidate"\` (learned-revalidate: the write's own URL and what acting rules
match are asked of the origin again before the write's answer, and kept; what learning finds
changed is fetched again after it), each on a fresh copy of the database.

${table(records)}

- **stale reads**: reads the oracle found older than a write acknowledged before the read
  was sent.
- **learning requests per write**: origin requests the proxy made to learn (conditional
  re-fetches of sampled entries), per write of the phase: the cost of learning.
- **learned invalidations**: cached entries removed by acting rules in the phase.
- **revalidations per write**: entries fetched again after each write (revalidate action).

${verdict}

What stayed stale in the last phase, by read template:

${(["learned", "learned-revalidate"] as const)
  .map((setup) => `- ${setup}: ${describeCounts(last(setup).staleByTemplate)}`)
  .join("\n")}

Reads that were not hits in the last phase, by read template:

${SETUPS.map((setup) => `- ${setup}: ${describeCounts(last(setup).missesByTemplate)}`).join("\n")}

${(["learned", "learned-revalidate"] as const)
  .map(
    (setup) =>
      `Rules acting at the end, ${setup} (write template -> read template, held/tested):\n\n${
        Object.values(rules[setup] ?? {})
          .at(-1)
          ?.map((r) => `- \`${r.write} -> ${r.read}\` ${r.held}/${r.tested}`)
          .join("\n") || "- none"
      }`,
  )
  .join("\n\n")}
`;
  const path = writeResults(
    options.out,
    { command, date: new Date().toISOString(), git, options, records, rules, staleSamples },
    md,
  );
  console.log(`\n${table(records)}\n\n${verdict}\n\nwrote ${path}.json and .md in ${seconds} s`);
});

/**
 * The learning and revalidation budgets per second: the sequence runs hundreds of writes a
 * second, which real traffic spreads over minutes, so the defaults (20 and 200) would leave
 * most writes unobserved. The caps per write stay the defaults (8 and 16).
 */
const LEARNING_PER_SECOND = 2000;

/**
 * `edgecache proxy` as a user runs it, memory tier only, in a folder of its own with a
 * config naming the origin (and the learning budget).
 */
async function startProxy(
  originUrl: string,
  action: "invalidate" | "revalidate" | undefined,
): Promise<Server> {
  const port = await freePort();
  const cwd = makeTmpDir();
  const learn = action !== undefined;
  const config = {
    proxy: {
      origins: [{ origin: originUrl }],
      ...(learn && {
        learn: { perSecond: LEARNING_PER_SECOND, revalidatePerSecond: LEARNING_PER_SECOND, action },
      }),
    },
  };
  writeFileSync(join(cwd, "edgecache.config.json"), JSON.stringify(config));
  return startServer({
    name: learn ? `proxy-learned-${action}` : "proxy-ttl",
    argv: [
      ...[join(ROOT, "bin", "edgecache.js"), "proxy"],
      ...["--host", "127.0.0.1", "--port", String(port), "--no-cache-file"],
      ...(learn ? ["--learn"] : []),
    ],
    cwd,
    readyUrl: (line) =>
      new RegExp(`//127\\.0\\.0\\.1:${port}\\b`).test(line)
        ? `http://127.0.0.1:${port}`
        : undefined,
  });
}

async function actingRules(client: Client): Promise<Rule[]> {
  const { rules } = await client.json<{ rules: Rule[] }>("/_edgecache/rules");
  return rules;
}

/** Stale reads by their template (`/v1/orders?offset=*&sort=*&status=*`), most first. */
function byTemplate(paths: ReadonlyMap<string, number>): Record<string, number> {
  const counts = new Map<string, number>();
  for (const [path, n] of paths) {
    const { template } = templateOf(path);
    counts.set(template, (counts.get(template) ?? 0) + n);
  }
  return Object.fromEntries([...counts].sort((a, b) => b[1] - a[1]));
}

function describeCounts(counts: Record<string, number>): string {
  const parts = Object.entries(counts).map(([template, n]) => `\`${template}\` ${n}`);
  return parts.length === 0 ? "none" : parts.join(", ");
}

function table(records: PhaseRecord[]): string {
  const rows = records.map(
    (r) =>
      `| ${r.setup} | ${r.phase} | ${r.writesSoFar} | ${r.reads} | ${r.staleReads} | ${(r.hitRate * 100).toFixed(1)}% | ${r.learningPerWrite} | ${r.learnedInvalidations} | ${r.revalidationsPerWrite} | ${r.actingRules} | ${r.errors} |`,
  );
  return [
    "| setup | phase | writes so far | reads | stale reads | hit rate | learning requests per write | learned invalidations | revalidations per write | rules acting | errors |",
    "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ...rows,
  ].join("\n");
}
