/**
 * edgecache/testing: the conformance suites the project runs over its own stores, change
 * logs and sources, for anyone writing another. Each call registers a vitest `describe`
 * block that holds the implementation to its contract, against the real backend.
 *
 * vitest only (an optional peer dependency): the suites skip a capability's tests once
 * the store is made and turn out not to have it (`ctx.skip()`), give slow tests their own
 * timeouts, and assert with vitest's `expect`; a runner-agnostic shape would give up the
 * first or carry its own assertion library.
 *
 * @example
 * // test/my-store.test.ts, run by `vitest run`
 * import { storeConformance } from "edgecache/testing";
 * import { myStore } from "../src/my-store.ts";
 *
 * storeConformance("my-store", (clock) => myStore({ now: clock.now }));
 */

export type { CapturedChange, CaptureFeed } from "../core/capture-feed.ts";
export type { ChangeLog, LogFollower, WriteTurn } from "../core/change-log/contract.ts";
// The contracts the suites hold an implementation to, for typing the one under test.
export type { Store } from "../core/store.ts";
export type { CatalogColumn, SqlClient, SqlResult, SqlRow } from "../database/client.ts";
// The driver contract, for a driver written outside edgecache (see sqlDriverConformance).
export type { Statement, Steps } from "../database/dialect.ts";
export type {
  BatchDriver,
  Driver,
  SqlDriver,
  TransactionDriver,
  WriteOptions as DriverWriteOptions,
} from "../database/driver.ts";
// What a source under the suite is seeded with: the demo tables (SQLite's DDL; PostgreSQL's
// is the same tables with its types), their rows, and the view over them.
export { DEMO_SCHEMA, demoRows, demoViews, seedDemo } from "../demo/seed.ts";
export type { Source } from "../sources/source.ts";
export { type CaptureFeedFixture, captureFeedConformance } from "./capture-feed.ts";
export {
  changeLogConformance,
  type LogBackend,
  type LogCapabilities,
  type LogFactory,
  Recorder,
} from "./change-log.ts";
export { type Item, type OrmAdapterFixture, ormAdapterConformance } from "./orm-adapter.ts";
export {
  CASCADE_SQL,
  CASCADE_T1_EVENTS,
  CONFORMANCE_SIZE,
  type SourceBackend,
  type SourceConformanceOptions,
  sourceConformance,
} from "./source.ts";
export {
  type SqlClientBackend,
  sqlClientConformance,
  sqlDriverConformance,
} from "./sql-driver.ts";
export {
  type CleanupStore,
  type ConformanceClock,
  type MakeStore,
  type StoreConformanceOptions,
  storeConformance,
} from "./store.ts";
