import { describe, expect, it } from "vitest";
import type { CapturedChange, CaptureFeed } from "../core/capture-feed.ts";
import { withFixture } from "./fixture.ts";

/**
 * A change table under the capture-feed suite: a feed over it with capture installed on a
 * table `items (id integer primary key, name text)` whose columns the feed knows (a data
 * API source's `schema()` read, as the data API reads it before it follows), nothing
 * captured yet, and writes to that table made around edgecache (a connection of their
 * own), each committed when its promise resolves.
 */
export interface CaptureFeedFixture {
  feed: CaptureFeed;
  /** `items` as the feed's events name it (`schema.items` where a schema is named). */
  table: string;
  /** One committed write to `items`: a row inserted, its name updated, or deleted. */
  write(op: "insert" | "update" | "delete", id: number, name?: string): Promise<void>;
  /** Closes the feed and releases the database. */
  close(): Promise<void>;
}

/**
 * The capture-feed conformance suite: a change table as every follower consumes it (the
 * data API's `CapturingSource.captureFeed()` and the query caches' installations, alike),
 * whatever the database and however the triggers write it. A write's row changes come back
 * in commit order with their old and new rows and the database's time, at most `limit` at
 * a time and the same ones until consumed; consuming removes those alone; `pending` says
 * whether any waits; `wait`, after a read, wakes for a commit, for its time, or for an
 * abort.
 *
 * `make` is called by each test for a fresh change table (a new file, a new schema).
 *
 * @example
 * import { captureFeedConformance } from "edgecache/testing";
 * captureFeedConformance("my database", async () => {
 *   const db = await freshDatabase(); // creates items, installs capture
 *   return {
 *     feed: mySource(db).captureFeed(),
 *     table: "items",
 *     write: (op, id, name) => db.run(...),
 *     close: () => db.drop(),
 *   };
 * });
 */
export function captureFeedConformance(
  name: string,
  make: () => Promise<CaptureFeedFixture>,
): void {
  const using = (test: (f: CaptureFeedFixture) => Promise<void>) => withFixture(make, test);
  /** Everything waiting now: read until a read comes back short (none left behind). */
  const readAll = async (feed: CaptureFeed, limit = 100) => {
    const out: CapturedChange[] = [];
    for (;;) {
      const some = await feed.read(limit, true);
      out.push(...some.filter((c) => !out.some((o) => o.seq === c.seq)));
      if (some.length < limit) return out;
      await feed.consume(some);
    }
  };

  describe(`capture feed conformance: ${name}`, { timeout: 30_000 }, () => {
    it("is installed, leads alone, and has nothing waiting before any write", () =>
      using(async ({ feed }) => {
        expect(await feed.installed()).toBe(true);
        expect(await feed.lead()).toBe(true);
        expect(await feed.pending()).toBe(false);
        expect(await feed.read(10, true)).toEqual([]);
      }));

    it("reads each row change with its old and new rows, in commit order, stamped by the database", () =>
      using(async ({ feed, table, write }) => {
        const before = Date.now();
        await write("insert", 1, "a");
        await write("update", 1, "b");
        await write("insert", 2, "c");
        await write("delete", 2);
        expect(await feed.pending()).toBe(true);
        const changes = await readAll(feed);
        expect(changes.map((c) => [c.event.table, c.event.op])).toEqual([
          [table, "insert"],
          [table, "update"],
          [table, "insert"],
          [table, "delete"],
        ]);
        const seqs = changes.map((c) => c.seq);
        expect(seqs).toEqual([...seqs].sort((x, y) => x - y));
        expect(new Set(seqs).size).toBe(4);
        const [insert, update, second, removal] = changes.map((c) => c.event);
        expect(insert?.new).toMatchObject({ id: 1, name: "a" });
        expect(update?.old).toMatchObject({ id: 1, name: "a" });
        expect(update?.new).toMatchObject({ id: 1, name: "b" });
        expect(second?.new).toMatchObject({ id: 2, name: "c" });
        expect(removal?.old).toMatchObject({ id: 2, name: "c" });
        // The database's clock, this machine's here: within a minute of the writes.
        for (const c of changes) {
          expect(c.at).toBeGreaterThan(before - 60_000);
          expect(c.at).toBeLessThan(Date.now() + 60_000);
        }
      }));

    it("reads at most `limit`, the oldest first, and the same ones until they are consumed", () =>
      using(async ({ feed, write }) => {
        for (const id of [1, 2, 3]) await write("insert", id, `n${id}`);
        const first = await feed.read(2, true);
        expect(first.map((c) => c.event.new?.id)).toEqual([1, 2]);
        expect((await feed.read(2, true)).map((c) => c.seq)).toEqual(first.map((c) => c.seq));
      }));

    it("consume removes the changes given, and only those", () =>
      using(async ({ feed, write }) => {
        for (const id of [1, 2, 3]) await write("insert", id, `n${id}`);
        await feed.consume(await feed.read(2, true));
        const rest = await feed.read(10, true);
        expect(rest.map((c) => c.event.new?.id)).toEqual([3]);
        expect(await feed.pending()).toBe(true);
        await feed.consume(rest);
        expect(await feed.pending()).toBe(false);
        expect(await feed.read(10, true)).toEqual([]);
      }));

    it("wait wakes for a commit, for its time, and at once when aborted", () =>
      using(async ({ feed, write }) => {
        // Its time, with nothing written.
        await feed.wait(50);
        // A commit while it waits after a read (as a follower waits): it wakes long before
        // its time (a notification, or a look at the database every so often), and the
        // change is there.
        expect(await feed.read(10, true)).toEqual([]);
        let awake = false;
        const woken = feed.wait(60_000).then(() => {
          awake = true;
        });
        await write("insert", 1, "a");
        await Promise.race([woken, new Promise((r) => setTimeout(r, 5_000))]);
        expect(awake).toBe(true);
        expect((await feed.read(10, true)).length).toBe(1);
        // Aborted: at once, whatever its time.
        const controller = new AbortController();
        const waiting = feed.wait(60_000, controller.signal);
        controller.abort();
        await waiting;
      }));
  });
}
