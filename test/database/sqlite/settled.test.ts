import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import { afterAll, afterEach, beforeEach, describe, expect, it } from "vitest";
import type { CaptureFeed } from "../../../src/core/capture-feed.ts";
import { sqliteExecutorFeed } from "../../../src/database/sqlite/change-table.ts";
import {
  type OwnConnection,
  ownConnection,
  type SyncSqlite,
} from "../../../src/database/sqlite/own-connection.ts";
import { sqliteSource } from "../../../src/sources/sqlite.ts";

// A feed on a connection of edgecache's own tells whether a change may wait that a load
// read before the question saw, with no statement of its own: by its next look at
// data_version, or the read that follows a commit (the changes' trigger times).

const dir = mkdtempSync(join(tmpdir(), "edgecache-settled-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

let app: Database.Database;
let own: OwnConnection;
let feed: CaptureFeed;
let n = 0;

beforeEach(async () => {
  const path = join(dir, `db-${n++}.db`);
  app = new Database(path);
  app.exec("PRAGMA journal_mode = WAL; CREATE TABLE t (id INTEGER PRIMARY KEY, x TEXT)");
  const source = sqliteSource({ database: app });
  await source.installCapture();
  await source.close();
  own = ownConnection(async () => new Database(path) as unknown as SyncSqlite);
  feed = sqliteExecutorFeed(own, () => ["id", "x"], { own: true });
});
afterEach(async () => {
  await feed.close();
  await own.close();
  app.close();
});

/** Reads and consumes every change, as the follower does. */
async function drain(): Promise<number> {
  const changes = await feed.read(100, true);
  await feed.consume(changes);
  return changes.length;
}

/**
 * Lets the feed look until `answer` settles (as the follower's wait between reads): its
 * answer, which must come from one of the first looks, not from its time running out.
 */
async function answered(answer: Promise<boolean>): Promise<boolean> {
  let done = false;
  void answer.finally(() => {
    done = true;
  });
  let looks = 0;
  while (!done && looks < 20) {
    looks++;
    await feed.wait(50);
    if (!done) await drain();
  }
  expect(looks).toBeLessThan(5);
  return answer;
}

/** `answer`, or "late" if it is not there within a few turns of the event loop. */
function atOnce(answer: Promise<boolean>): Promise<boolean | "late"> {
  return Promise.race([answer, new Promise<"late">((r) => setTimeout(() => r("late"), 50))]);
}

const later = () => new Promise((r) => setTimeout(r, 5));

describe("SQLite capture's settled (no statement of its own)", () => {
  it("is false before the feed has read the table", async () => {
    expect(await atOnce(feed.settled!())).toBe(false);
  });

  it("with no commit since its last read: true at its next look, with no statement of its own", async () => {
    await drain();
    const statements = own.statements;
    const answer = feed.settled!();
    expect(own.statements).toBe(statements);
    expect(await answered(answer)).toBe(true);
  });

  it("a change committed before the question: false (the load may have seen it)", async () => {
    await drain();
    app.prepare("INSERT INTO t VALUES (1, 'a')").run();
    await later();
    expect(await answered(feed.settled!())).toBe(false);
  });

  it("a change committed after the question only: true (its transaction was open when the load had read)", async () => {
    await drain();
    const answer = feed.settled!();
    await later();
    app.prepare("INSERT INTO t VALUES (2, 'b')").run();
    expect(await answered(answer)).toBe(true);
  });

  it("a change read and not consumed yet, or a data API write's marked row the read leaves: false at once", async () => {
    app.prepare("INSERT INTO t VALUES (3, 'c')").run();
    const changes = await feed.read(100, true);
    expect(changes).toHaveLength(1);
    expect(await atOnce(feed.settled!())).toBe(false);
    await feed.consume(changes);
    app.prepare("INSERT INTO t VALUES (4, 'd')").run();
    app
      .prepare(
        "UPDATE _edgecache_changes SET api = 'mark' WHERE seq = (SELECT max(seq) FROM _edgecache_changes)",
      )
      .run();
    expect(await drain()).toBe(0);
    expect(await atOnce(feed.settled!())).toBe(false);
  });

  it("a change written later than this machine's clock says it is now: its trigger's time is trusted no more", async () => {
    await drain();
    app.prepare("INSERT INTO t VALUES (7, 'g')").run();
    // As another clock a minute ahead would have written it (a replica's primary).
    app.prepare("UPDATE _edgecache_changes SET at = at + 60000").run();
    expect(await drain()).toBe(1);
    const answer = feed.settled!();
    await later();
    app.prepare("INSERT INTO t VALUES (8, 'h')").run();
    expect(await answered(answer)).toBe(false);
  });

  it("a question left when the feed closes is answered false", async () => {
    await drain();
    const answer = feed.settled!();
    await feed.close();
    expect(await atOnce(answer)).toBe(false);
  });

  it("a look on a new connection is not compared with the last one's data_version (each starts again)", async () => {
    await drain();
    app.prepare("INSERT INTO t VALUES (5, 'e')").run();
    // A statement that fails closes capture's connection; the next opens another, whose
    // data_version starts where the last read's did.
    await expect(own.run("INSERT INTO t VALUES (5, 'again')", [])).rejects.toThrow();
    await later();
    expect(await answered(feed.settled!())).toBe(false);
  });
});
