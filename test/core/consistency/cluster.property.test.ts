import { join } from "node:path";
import {
  createNodeEdgecache,
  type NodeEdgecache,
} from "../../../src/adapter/node/modes/data-api.ts";
import { randomId } from "../../../src/core/random-id.ts";
import { until } from "../../helpers/cluster.ts";
import { type NodeProcess, redisConfig, startNode } from "../../helpers/nodes.ts";
import { consistencyProperty, type Deployment, nodesInProcess } from "./property.ts";

const REDIS = process.env.REDIS_URL ?? "redis://127.0.0.1:6379";

/**
 * Two nodes in this process over one database, each with its own memory tier and cache file
 * (a cache file is one node's), sharing a Redis tier and a change log in Redis. Reads and
 * writes go to either at random.
 */
async function twoCaches(dir: string): Promise<Deployment> {
  const redis = { url: REDIS, prefix: `test:${randomId()}:`, leaseMs: 2000 };
  const options = { cwd: dir, demo: { users: 60, orders: 240 }, redis };
  const nodes = [
    await createNodeEdgecache({ ...options, cacheFile: join(dir, "a.cache.db") }),
    await createNodeEdgecache({ ...options, cacheFile: join(dir, "b.cache.db") }),
  ];
  await Promise.all(nodes.map((n) => n.cache.writable()));
  return nodesInProcess(nodes);
}

// A shared log patches nothing (records may arrive out of the database's commit order).
consistencyProperty("two caches sharing a Redis tier and log", twoCaches, 50, 0);

/**
 * A node joining a busy cluster, again and again: one node with its cache file, and a
 * second with memory and the Redis tier only that closes and starts anew every
 * `RESTART_EVERY` reads, while writes go on through either. Each new one judges the Redis
 * tier's entries by the history the log keeps (a summary and the records after it), as
 * the nodes that kept running do. The figures it prints: over 30 runs, about 125 reads
 * served from Redis and 60 copies refused by the new nodes, against about 15 and 165 when
 * a new node judged what it missed by table.
 */
async function joiningNode(dir: string): Promise<Deployment> {
  const redis = { url: REDIS, prefix: `test:${randomId()}:`, leaseMs: 2000 };
  const options = { cwd: dir, demo: { users: 60, orders: 240 }, redis };
  const steady = await createNodeEdgecache({ ...options, cacheFile: join(dir, "a.cache.db") });
  const newcomer = () => createNodeEdgecache({ ...options, cacheFile: false });
  const nodes = [steady, await newcomer()];
  await Promise.all(nodes.map((n) => n.cache.writable()));
  const joined = { starts: 1, hits: 0, fromRedis: 0, refused: 0 };
  const count = (n: NodeEdgecache) => {
    const stats = n.cache.stats();
    joined.hits += stats.hits;
    joined.refused += stats.refused;
    joined.fromRedis += stats.tiers.find((t) => t.name.includes("redis"))?.hits ?? 0;
  };
  // nodesInProcess picks from `nodes` at each request: the new node takes the old one's place.
  const deployment = nodesInProcess(nodes);
  let reads = 0;
  return {
    ...deployment,
    async read(path) {
      if (++reads % RESTART_EVERY === 0) {
        const old = nodes[1]!;
        count(old);
        await old.close();
        nodes[1] = await newcomer();
        await nodes[1].cache.writable();
        joined.starts++;
      }
      return deployment.read(path);
    },
    async close() {
      count(nodes[1]!);
      const { starts, hits, fromRedis, refused } = joined;
      console.log(
        `[property joining node] starts=${starts} hits=${hits} from Redis=${fromRedis} refused=${refused}`,
      );
      await deployment.close();
    },
  };
}
const RESTART_EVERY = 25;

consistencyProperty("a node joining a busy cluster on Redis", joiningNode, 30, 0);

/**
 * Three `edgecache serve` processes on loopback over one database, each with its own cache
 * file, sharing Redis: writes through the first, reads through the other two.
 */
async function threeProcesses(dir: string): Promise<Deployment> {
  redisConfig(dir, { url: REDIS, prefix: `test:${randomId()}:` });
  const nodes: NodeProcess[] = [];
  try {
    for (const name of ["a", "b", "c"]) {
      // The first creates the demo database; the others open it.
      nodes.push(await startNode(dir, ["--db", "app.db", "--cache-file", `${name}.cache.db`]));
    }
  } catch (err) {
    for (const n of nodes) await n.stop("SIGKILL");
    throw err;
  }
  const [writer, ...readers] = nodes as [NodeProcess, ...NodeProcess[]];
  const stats = async () =>
    Promise.all(
      nodes.map(async (n) => (await (await fetch(`${n.url}/_edgecache/stats`)).json()) as Stats),
    );
  // Each node serves from cache only once it holds its lease.
  await until(async () => (await stats()).every((s) => s.log.lease));
  return {
    databasePath: join(dir, "app.db"),
    read: (path) => fetch(readers[Math.floor(Math.random() * readers.length)]!.url + path),
    write: (method, path, body) =>
      fetch(writer.url + path, {
        method,
        headers: { "content-type": "application/json" },
        body: body === undefined ? undefined : JSON.stringify(body),
      }),
    patches: async () => (await stats()).reduce((t, s) => t + s.patches, 0),
    entries: async () => (await stats()).reduce((t, s) => t + s.indexedKeys, 0),
    async close() {
      for (const n of nodes) await n.stop();
    },
  };
}

interface Stats {
  patches: number;
  indexedKeys: number;
  log: { lease: boolean };
}

consistencyProperty("three node processes on loopback", threeProcesses, 25, 0);
