import { requirePostgres } from "../helpers/services.ts";
import { nodePgHarness, postgresJsHarness } from "./drivers.ts";
import { drizzleSuite } from "./suite.ts";

const pg = await requirePostgres();

pg.describe("drizzle on postgres-js (PostgreSQL)", () => {
  drizzleSuite(() => postgresJsHarness(pg.url));
});

pg.describe("drizzle on node-postgres (PostgreSQL)", () => {
  drizzleSuite(() => nodePgHarness(pg.url));
});
