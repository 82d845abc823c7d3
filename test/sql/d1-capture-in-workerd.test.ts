import { describe } from "vitest";
import { firstReadTest, followingSuite } from "../query-cache/d1-follow.ts";

// edgecache/sql on a D1 binding inside workerd, following D1 change capture through the
// change log's Durable Object: `execute` waits for its own rows to be drained and applied
// instead of emptying its table, and writes made straight into D1 are seen after the
// drain. Reads of five kinds (by key, by a column, a range with a limit, a page, a count),
// each checked against D1 (test/query-cache/d1-follow-entry.ts).

describe("edgecache/sql on D1 follows D1 change capture (workerd)", () => {
  followingSuite("/sql", 5, 60);
});

describe("edgecache/sql on D1: a new isolate's first read is stored for the next (workerd)", () => {
  firstReadTest("/sql");
});
