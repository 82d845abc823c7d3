import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import type { Cache } from "../../src/core/cache/index.ts";
import type { CaptureFeed } from "../../src/core/capture-feed.ts";
import type { ClientCapture } from "../../src/database/client-capture.ts";
import { QueryCapture } from "../../src/query-cache/query-capture.ts";

/**
 * A query cache's first read of a captured table starts capture's follower and waits for its
 * first look at the change table (issue 42): the read then takes the mode the next reads
 * find. Whatever the look finds (this process leads, another does, the database refuses)
 * answers at once; a look that never answers holds the read for FIRST_LOOK_MS at most. The
 * clock is fake: a wait that needed a timer would never end.
 */

/** A change table whose answers the test gives; empty, no change ever wakes it. */
function feed(answers: { installed?: () => Promise<boolean>; lead?: () => Promise<boolean> }) {
  const f: CaptureFeed = {
    installed: answers.installed ?? (async () => true),
    lead: answers.lead ?? (async () => true),
    read: async () => [],
    pending: async () => false,
    consume: async () => {},
    // Until woken (close wakes it).
    wait: (_ms, signal) =>
      new Promise((resolve) => signal?.addEventListener("abort", () => resolve())),
    close: async () => {},
  };
  return f;
}

/** A QueryCapture of one installation (`users`) whose change table is `changes`. */
async function capture(changes: CaptureFeed): Promise<QueryCapture> {
  const client: ClientCapture = {
    installations: async () => [
      {
        id: "main",
        tables: new Map([["users", { primaryKey: "id", columns: ["id"] }]]),
        feed: () => changes,
      },
    ],
    foreignKeys: async () => [],
  };
  const engine = { capturedApplied: () => 0, applyWrite: async () => {} } as unknown as Cache;
  const c = new QueryCapture(client, engine, { logger: { warn: () => {} } });
  await c.ready;
  return c;
}

describe("a first read waits for capture's first look at the change table", () => {
  beforeEach(() => {
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout"] });
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it("this process leads: the read finds capture followed", async () => {
    const c = await capture(feed({}));
    await c.want(["users"]);
    expect(c.mode()).toBe("capture");
    await c.close();
  });

  it("another process leads: that answer ends the wait, at table level", async () => {
    const c = await capture(feed({ lead: async () => false }));
    await c.want(["users"]);
    expect(c.mode()).toBe("tables");
    await c.close();
  });

  it("the look fails (the database refuses it): the read goes on at table level", async () => {
    const refused = async (): Promise<boolean> => {
      throw new Error("no such table: _edgecache_changes");
    };
    const c = await capture(feed({ installed: refused }));
    await c.want(["users"]);
    expect(c.mode()).toBe("tables");
    await c.close();
  });

  it("a look that never answers holds the read for FIRST_LOOK_MS (1 s) at most", async () => {
    let answer: (installed: boolean) => void = () => {};
    const hanging = () => new Promise<boolean>((resolve) => (answer = resolve));
    const c = await capture(feed({ installed: hanging }));
    let done = false;
    const wanted = c.want(["users"]).then(() => (done = true));
    await vi.advanceTimersByTimeAsync(900);
    expect(done).toBe(false);
    await vi.advanceTimersByTimeAsync(100);
    await wanted;
    expect(c.mode()).toBe("tables");
    // A later read of the table does not wait for that look again.
    await c.want(["users"]);
    answer(false);
    await c.close();
  });
});
