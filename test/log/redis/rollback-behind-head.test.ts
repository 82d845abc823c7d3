import { Redis } from "ioredis";
import { afterEach, expect, it } from "vitest";
import { randomId } from "../../../src/core/random-id.ts";
import { logKeys, type ScriptClient, withScripts } from "../../../src/log/redis/scripts.ts";
import { requireRedis } from "../../helpers/services.ts";

/**
 * The log went back one record (a lagging replica took over) and then took two records
 * before node A renewed. A applied the lost record under seq 2; it renews with applied 2
 * and that record's mark, as RedisFollower.renewArgs sends. The head is 3, so RENEW's
 * check (applied > head, or applied == head with another mark) does not fire: A is
 * recorded as having applied seq 2, and the writer of the new seq 2 stops waiting for it,
 * though A never applied that record (it would serve what the record invalidated until
 * its reader meets seq 3's `prev`).
 */

const redis = await requireRedis();
const open: Redis[] = [];
afterEach(() => {
  for (const c of open.splice(0)) c.disconnect();
});

const LEASE = 5000;

redis.describe("a log that went back, renewed behind the new head", () => {
  it("a node that applied a lost record is not counted as having applied its seq's replacement", async () => {
    const prefix = `test:${randomId()}:`;
    const { keys, channel } = logKeys(prefix);
    const raw = new Redis(redis.url);
    open.push(raw);
    const client = withScripts(raw, keys.length) as ScriptClient;
    const append = (mark: string, node: string) =>
      client.ecAppend(...keys, mark, '[{"keys":["k"]}]', "1000", "", channel, node, LEASE, "");
    const renew = (node: string, log: string, applied: number, mark: string) =>
      client.ecRenew(...keys, randomId(), node, applied, LEASE, log, channel, mark) as Promise<
        [string, number, number, number]
      >;

    const [log] = (await client.ecStart(...keys, randomId(), "", 1000)) as [string];
    await renew("A", log, 0, "");
    await append("m1", "W"); // seq 1
    await renew("A", log, 1, "m1");
    // What a lagging replica holds.
    const replica = await Promise.all(keys.map((k) => raw.dumpBuffer(k)));
    await append("m2", "W"); // seq 2, lost with the primary
    await renew("A", log, 2, "m2"); // A applied it
    const failover = raw.multi();
    keys.forEach((k, i) => {
      failover.del(k);
      const dump = replica[i];
      if (dump) failover.restore(k, 0, dump);
    });
    await failover.exec();

    await append("m2x", "W2"); // seq 2 again: another record
    await append("m3x", "W2"); // seq 3
    // A's renewal, as its follower sends it (it has not read seq 3 yet).
    const [after] = await renew("A", log, 2, "m2");
    // Either the log is resealed (a new id), or A still counts as behind seq 2.
    const behind = (await client.ecBarrier(
      ...keys,
      randomId(),
      "W2",
      3,
      LEASE,
      log,
      channel,
      "m3x",
      2,
      log,
    )) as [string, number, number, number, number, (string | number)[]];
    const waitingOnA = behind[5].includes("A");
    expect(after !== log || waitingOnA).toBe(true);
  });
});
