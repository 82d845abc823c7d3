import { describe, expect, it } from "vitest";
import { localChangeLog } from "../../src/core/change-log/in-process.ts";
import { changeLogConformance } from "../../src/testing/index.ts";

// One process: each instance is a log of its own, always trusted, delivering synchronously;
// a restart resumes from the snapshot its predecessor took at shutdown.
changeLogConformance("in-process", {
  capabilities: { shared: false, turns: false },
  async backend() {
    const logs = new Map<object, ReturnType<typeof localChangeLog>>();
    const open = (resume?: Parameters<typeof localChangeLog>[0]) => {
      const log = localChangeLog(resume);
      logs.set(log, log);
      return log;
    };
    return {
      open: async () => open(),
      async restart(old) {
        const snapshot = logs.get(old)!.snapshot();
        await old.close();
        return open({ resume: snapshot });
      },
      async close() {},
    };
  },
});

describe("in-process log with captured writes: quiet for the tables a load read", () => {
  const waiting = new Set<string>();
  const log = localChangeLog({
    outside: {
      active: () => true,
      pending: async (tables) =>
        tables === undefined ? waiting.size > 0 : tables.some((t) => waiting.has(t)),
      ordered: true,
    },
  });
  const users = { table: "users", op: "update" as const, old: { id: 1 }, new: { id: 1 } };
  const orders = { ...users, table: "orders" };

  it("a record or a waiting change of another table leaves a load of users exact", async () => {
    const position = log.snapshot().position;
    await log.append([{ event: orders }]);
    waiting.add("orders");
    expect(await log.quietSince(position, ["users"])).toBe(true);
    // Without the tables, any record or waiting change counts.
    expect(await log.quietSince(position)).toBe(false);
    waiting.clear();
  });

  it("a record of a table read, a waiting change of one, or a record naming no table does not", async () => {
    let position = log.snapshot().position;
    await log.append([{ event: users }]);
    expect(await log.quietSince(position, ["users", "orders"])).toBe(false);
    position = log.snapshot().position;
    waiting.add("users");
    expect(await log.quietSince(position, ["users"])).toBe(false);
    waiting.clear();
    await log.append([{ tags: ["x"] }]);
    expect(await log.quietSince(position, ["users"])).toBe(false);
  });
});
