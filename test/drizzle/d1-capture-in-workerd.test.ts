import { describe } from "vitest";
import { followingSuite, tableLevelSuite } from "../query-cache/d1-follow.ts";

// edgecache/drizzle on D1 inside workerd, following D1 change capture: the change log's
// Durable Object drains D1's change table (alarm every 200 ms, and at once when a Drizzle
// mutation asks), and the isolate applies its records. Selects of six shapes (by key, by
// a column, a range with a limit, a page, IN, OR of LIKE and IS NULL) against writes
// through Drizzle and straight into D1 (as `wrangler d1 execute`), each read checked
// against a fresh query of D1 (test/query-cache/d1-follow-entry.ts).

describe("edgecache/drizzle on D1 follows D1 change capture (workerd)", () => {
  followingSuite("/drizzle", 6, 100);
});

describe("edgecache/drizzle on D1 without capture installed (workerd)", () => {
  tableLevelSuite("/drizzle");
});
