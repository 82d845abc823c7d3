import { Redis } from "ioredis";
import type { ChangeLog } from "../../../src/core/change-log/contract.ts";
import { randomId } from "../../../src/core/random-id.ts";
import { redisChangeLog } from "../../../src/log/redis/index.ts";
import { changeLogConformance } from "../../../src/testing/index.ts";
import { quiet } from "../../helpers/cluster.ts";
import { hookReads } from "../../helpers/log-reader.ts";
import { requireRedis } from "../../helpers/services.ts";

const shared = await requireRedis();

/** Short, so the lease and turn tests wait little; the option's minimum is 200 ms. */
const LEASE_MS = 400;
/** The option's minimum: the retention test appends three times as many records. */
const RETAIN = 100;

shared.describe("the Redis change log on the shared Redis", () => {
  changeLogConformance("redis", {
    capabilities: { shared: true, turns: "overlapping", leaseMs: LEASE_MS, retain: RETAIN },
    async backend() {
      // Each test its own prefix: a log of its own on the one server.
      const prefix = `edgecache-test:${randomId()}:`;
      const clients = new Map<ChangeLog, { client: Redis; stalled: boolean; reading: number }>();
      async function open(): Promise<ChangeLog> {
        // Each node its own client, whose reader can be held back (see stall).
        const client = new Redis(shared.url);
        client.on("error", () => {});
        const state = { client, stalled: false, reading: 0 };
        hookReads(client, {
          async before() {
            while (state.stalled) await new Promise((r) => setTimeout(r, 10));
            state.reading++;
          },
          after() {
            state.reading--;
          },
        });
        const log = await redisChangeLog({
          client,
          prefix,
          leaseMs: LEASE_MS,
          retain: RETAIN,
          logger: quiet,
        });
        clients.set(log, state);
        return log;
      }
      return {
        open,
        async stall(node) {
          const state = clients.get(node)!;
          state.stalled = true;
          // The blocking read in flight returns within a quarter lease (and renews once); a
          // loaded machine may take longer, so the stall begins once it has returned.
          const until = Date.now() + 10 * LEASE_MS;
          while (state.reading > 0 && Date.now() < until) {
            await new Promise((r) => setTimeout(r, 10));
          }
          return () => {
            state.stalled = false;
          };
        },
        async close() {
          for (const [log, { client }] of clients) {
            await log.close();
            client.disconnect();
          }
          const admin = new Redis(shared.url);
          const keys = await admin.keys(`*${prefix}*`);
          if (keys.length > 0) await admin.del(...keys);
          admin.disconnect();
        },
      };
    },
  });
});
