/**
 * The cluster benchmark: several nodes sharing Redis against one node, on the workload
 * benchmark's database and request sequences (bench/workload/), judged by its stale-read
 * oracle; then the cross-node invalidation probe (bench/cluster/probe.ts).
 *
 *   npm run bench:cluster              # 10,000 users, 50,000 orders, 20,000 requests each
 *   npm run bench:cluster -- --quick   # the same database, 2,000 requests: under 2 minutes
 *
 * Needs Redis (--redis, else REDIS_URL, else redis://127.0.0.1:6379); each run takes a
 * fresh key prefix and drops its keys after. Writes `<out>.json` and `<out>.md` (default
 * bench/results/cluster). Exits 1 if any setup or probe read anything stale.
 *
 * Flags: --users n, --orders n, --requests n, --connections n, --ratios 0.01,..., --nodes n,
 * --strategy edgecache|edgecache-rehydrate, --probe-writes n, --redis url, --seed n,
 * --rate n (requests per second in an open loop instead of --connections closed-loop clients:
 * a fixed, light offered load, for CPU per request without queueing), --per-node (--rate is
 * per node: n nodes are sent n times the rate, each node the load one node gets),
 * --setups 1-local,n-alone,1-redis,n-redis,n-redis-lists (which to run; all by default),
 * --cpu-prof dir (each node's V8 CPU profile of each sequence, for bench/lib/cpu-profile.ts),
 * --repeat n (each setup n times per ratio, in turn: the CPU ratio's median over the runs,
 * for a machine whose one node alone varies by a third from run to run), --out path, --quick.
 *
 *   npm run bench:cluster -- --quick --ratios 0.05 --rate 200 --per-node --setups 1-redis,n-redis --repeat 5
 *                                      # issue 44's item 3: 3 nodes against 1, median of 5
 */
import { loadavg } from "node:os";
import { parseArgs } from "node:util";
import { type ClusterOptions, runCluster, SETUPS, type SetupName } from "./cluster/cluster.ts";
import { cacheTable, probeTable, redisTable, speedTable, targetLines } from "./cluster/report.ts";
import { runBench } from "./lib/processes.ts";
import { BenchRedis } from "./lib/redis.ts";
import { benchHead, describeHead, writeResults } from "./lib/results.ts";
import { commandLine, fail, positiveInt, readFlags } from "./lib/settings.ts";
import { readWorkloadFlags, workloadFlags } from "./workload/flags.ts";
import type { Strategy } from "./workload/strategies.ts";

const CACHING: Strategy[] = ["edgecache-rehydrate", "edgecache"];

const options = readFlags(() => {
  const { values } = parseArgs({
    options: {
      ...workloadFlags({ ratios: "0.01,0.05,0.1", out: "bench/results/cluster" }),
      nodes: { type: "string", default: "3" },
      // Rehydration is edgecache's default.
      strategy: { type: "string", default: "edgecache-rehydrate" },
      "probe-writes": { type: "string" },
      rate: { type: "string" },
      "per-node": { type: "boolean", default: false },
      setups: { type: "string", default: SETUPS.join(",") },
      "cpu-prof": { type: "string" },
      repeat: { type: "string", default: "1" },
      redis: { type: "string", default: process.env.REDIS_URL ?? "redis://127.0.0.1:6379" },
    },
  });
  if (!CACHING.includes(values.strategy as Strategy)) {
    fail(`--strategy: expected one of ${CACHING.join(", ")}, got ${values.strategy}`);
  }
  const nodes = positiveInt("nodes", values.nodes);
  const setups = values.setups.split(",") as SetupName[];
  for (const s of setups) {
    if (!SETUPS.includes(s)) fail(`--setups: expected some of ${SETUPS.join(", ")}, got ${s}`);
  }
  if (values["per-node"] && values.rate === undefined) fail("--per-node: needs --rate");
  if (nodes < 2) fail(`--nodes: expected at least 2, got ${nodes}`);
  return {
    ...readWorkloadFlags(values),
    nodes,
    strategy: values.strategy as Strategy,
    rate: values.rate === undefined ? undefined : positiveInt("rate", values.rate),
    perNode: values["per-node"],
    setups,
    redis: new BenchRedis(values.redis),
    probeWrites: positiveInt(
      "probe-writes",
      values["probe-writes"] ?? (values.quick ? "100" : "500"),
    ),
    cpuProf: values["cpu-prof"],
    repeat: positiveInt("repeat", values.repeat),
    out: values.out,
    log: (line: string) => console.log(line),
  } satisfies ClusterOptions & { out: string };
});

await runBench(async () => {
  const command = commandLine("bench:cluster");
  const started = Date.now();
  const loadavgBefore = loadavg();
  await options.redis.check();
  try {
    const { records, probes, stale } = await runCluster(options);
    const { redis, log: _log, out, ...settings } = options;
    const json = {
      ...benchHead(command, started, loadavgBefore),
      settings: { ...settings, redis: redis.url },
      records,
      probes,
      stale,
    };
    const markdown = `# Cluster: ${options.nodes} nodes sharing Redis against one node

${describeHead(json)}

The workload benchmark's database (${options.users.toLocaleString("en-US")} users, ${options.orders.toLocaleString("en-US")} orders), request sequences and stale-read oracle ([workload.md](workload.md)), with strategy \`${options.strategy}\`: ${options.requests.toLocaleString("en-US")} requests per setup and write ratio ${options.rate === undefined ? `from ${options.connections} concurrent keep-alive clients` : `sent in an open loop at ${options.rate} requests per second${options.perNode ? ` per node (${options.nodes} nodes are sent ${options.rate * options.nodes}: each node has the load one node has)` : ""} (each request at its time, answered or not: a fixed, light offered load every setup serves, so CPU per request is measured without queueing), over up to ${options.connections} keep-alive connections per node`}${options.repeat > 1 ? `, each setup run ${options.repeat} times per ratio, in turn (every setup once, then every setup again; setups are compared within a run)` : ""}, after warming (each read of the sequence once on each node that serves it in the sequence: every node starts with its share in memory, as after serving it for a while, as one node starts having read everything once; until stop 39 each read was warmed on one node only, so the first reads of a key on the others came from the Redis tier and cost a round trip). Five setups on the same sequence, each on a fresh copy of the database: one node with the in-process change log (the default); the floor, ${options.nodes} nodes alone (each with its own in-process log, blind to the others' writes: not a cache, its stale reads are not counted; what it costs over one node is what ${options.nodes} processes cost on this machine, whatever they coordinate); one node on Redis; and ${options.nodes} nodes on Redis (each its own process and memory tier, sharing the change log and a Redis tier under a fresh key prefix, and one SQLite file), by default and with \`redis.reloadLists\` (every list page a write invalidated is reloaded into Redis by one node, hot or not). Over ${options.nodes} nodes request i of the sequence goes to node i mod ${options.nodes}: round robin, as a load balancer without affinity deals requests, so every node reads every hot key and must see every other node's writes — the strict case for stale reads and the hard one for hit rate (a hash of the path would keep each key on one node).

${cacheTable(records)}

- **from Redis tier**: share of the hits that the shared Redis tier answered (the rest came from the node's own memory).
- **errors**: responses a correct server would not send (5xx, a write refused).
- **reads per node**: reads each node served, by its own counters.
- **log resets / refused / patched up / awaited**: times a node dropped its memory tier to start the change log over; entries it read from the Redis tier and refused (a change since their load may concern them, a patch could not tell the new response, and no other node's reload came in time); entries read from the Redis tier that it patched up to date with the write events since their load, as its memory would have been had it held them; and entries it refused, then served from the reload another node had claimed (it waited for that node's copy instead of loading too); over all nodes.

${speedTable(records)}

- **write p50 / p99**: the writes of the sequence, under load, until acknowledged.
- **vs 1 node**: requests per second against one node with the in-process log, same ratio, same run.
- **node CPU µs / request**: the nodes' CPU time during the sequence (all of them together) per request.
- **cores busy**: CPU seconds during the sequence of the nodes, of the driver (clients and oracle) and of the Redis server (all its clients), over the sequence's duration; the machine has ${json.cpus}, shared with whatever else runs on it.

**Redis commands per request**, counted by each node as it sends them (\`stats().redis\`, \`edgecache_redis_commands_total{kind}\`; test/log/redis/costs.test.ts checks the counts against what Redis saw), all nodes together, during the sequence:

${redisTable(records)}

- **hits / misses / writes**: requests of each kind the nodes served (a hit fresh or stale, from memory or the Redis tier).
- **commands / hit, / miss, / write**: commands sent for that kind, per request of it: a hit from memory sends none, one from the Redis tier a GET; a miss its GET and the copy of its load into Redis (and, with patches on, a look at the log); a write its turn and its append (writes that arrive together share them: a group of writes counts each), and a question to Redis only when an acknowledgement is slow to come.
- **following / request**: the log's reads and lease renewals of every node, per request of any kind; **background / request**: what was sent after an answer or outside a request (the writer's deletes in Redis, rehydration and its claims, copies of patches), the same.
- **round trips**: waited for, per request of the kind (commands sent together wait one).

**Invalidation probe**: ${options.probeWrites} writes one at a time (\`PATCH /v1/users/:id\`, 50 rows in turn), each through the next node; before each the row is read on every node (so it is cached there), and from the write's acknowledgement the row is read on every other node (on the node itself with one node) until each answers the new version. The barrier acknowledges a write only once every node holding a lease applied it, so the first read after the ack should already be new: **ack → all nodes new** is then one read's round trip, and a read after the ack answering the old version is a stale read.

${probeTable(probes)}

Targets:

${targetLines(records, probes).join("\n")}

Command:

\`\`\`sh
${command}
\`\`\`
`;
    const path = writeResults(out, json, markdown);
    console.log(
      `\n${cacheTable(records)}\n\n${speedTable(records)}\n\n${redisTable(records)}\n\n${probeTable(probes)}\n\n${targetLines(records, probes).join("\n")}\n\nwrote ${path}.json and .md in ${json.seconds} s`,
    );
    for (const s of stale.slice(0, 6)) {
      console.log(
        `stale under ${s.setup} (${s.writeRatio ?? "probe"}):`,
        JSON.stringify(s.samples[0]),
      );
    }
    if (stale.length > 0) {
      console.error("[bench] stale reads; see above");
      process.exitCode = 1;
    }
  } finally {
    options.redis.close();
  }
});
