/**
 * The Redis a benchmark's nodes share. Each run takes a fresh random key prefix, so runs
 * never see each other's log or entries (nor anyone else's on a shared server), and drops
 * its keys when it is done.
 */
import { Redis } from "ioredis";
import { randomId } from "../../src/core/random-id.ts";

export class BenchRedis {
  readonly #client: Redis;

  constructor(readonly url: string) {
    this.#client = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1 });
  }

  /** Fails with a message that says how to start Redis when it does not answer. */
  async check(): Promise<void> {
    try {
      await this.#client.connect();
      await this.#client.ping();
    } catch (error) {
      throw new Error(
        `[bench] Redis at ${this.url} does not answer (${(error as Error).message}); start it: redis-server --daemonize yes --save "" --appendonly no`,
      );
    }
  }

  /** A prefix no earlier run used. */
  freshPrefix(): string {
    return `bench-${randomId()}:`;
  }

  /**
   * Deletes the keys under `prefix`: the shared tier's (`<prefix>key`) and the change
   * log's (`{<prefix>log}:...`, braced so they share one Cluster slot).
   */
  async drop(prefix: string): Promise<number> {
    let dropped = 0;
    for (const match of [`${prefix}*`, `{${prefix}log}*`]) {
      let cursor = "0";
      do {
        const [next, keys] = await this.#client.scan(cursor, "MATCH", match, "COUNT", 1000);
        cursor = next;
        if (keys.length > 0) dropped += await this.#client.unlink(...keys);
      } while (cursor !== "0");
    }
    return dropped;
  }

  /**
   * Resolves once the change log under `prefix` is older than `ms` (by the server's clock,
   * the one the log uses). A new log holds every write back until it is a lease old (nodes
   * of a log it replaced may still serve until they notice): a start-up cost, not what a
   * running deployment pays per write, so runs begin after it.
   */
  async logOlderThan(prefix: string, ms: number): Promise<void> {
    for (;;) {
      const created = Number(await this.#client.hget(`{${prefix}log}:meta`, "created"));
      const [seconds, micros] = await this.#client.time();
      const wait = created + ms - (Number(seconds) * 1000 + Math.floor(Number(micros) / 1000));
      if (created > 0 && wait < 0) return;
      await new Promise((r) => setTimeout(r, Math.max(10, Math.min(wait + 1, 500))));
    }
  }

  /**
   * The server's CPU seconds so far (user + system, from INFO), whoever its clients are:
   * on a shared server, other work counts too.
   */
  async cpuSeconds(): Promise<number> {
    const info = await this.#client.info("cpu");
    const field = (name: string) => Number(info.match(new RegExp(`^${name}:([\\d.]+)`, "m"))?.[1]);
    return field("used_cpu_user") + field("used_cpu_sys");
  }

  close(): void {
    this.#client.disconnect();
  }
}
