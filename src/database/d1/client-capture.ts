import type { ClientCapture } from "../client-capture.ts";
import { clientExecutor, sqliteCatalog } from "../sqlite/client-capture.ts";
import type { D1DatabaseLike } from "./binding.ts";
import { D1_INTERNAL, D1OwnChanges } from "./change-table.ts";
import { D1Driver } from "./driver.ts";

/** How long a look at D1's catalog holds before a use reads it again, ms. */
const D1_REFRESH_MS = 5000;

/**
 * Capture behind a D1 binding: its change table is drained by the change log's Durable
 * Object (src/adapter/cloudflare/capture-drain.ts), not in the isolate, so its
 * installations have no feed here and the log orders what it drains. The catalog is read
 * when capture is used and at most every D1_REFRESH_MS (no timer: a Worker's outlives no
 * request, and D1 bills rows read). Its triggers write REALs exactly for numbers of a
 * bounded size only (see EXACT_D1_REALS in the query cache's capture).
 */
export function d1ClientCapture(db: D1DatabaseLike): ClientCapture {
  const catalog = sqliteCatalog(
    clientExecutor(new D1Driver(db, new D1OwnChanges(db), undefined)),
    D1_INTERNAL,
  );
  return {
    foreignKeys: catalog.foreignKeys,
    installations: async () =>
      (await catalog.installations()).map((i) => ({
        ...i,
        exactReals: i.exactReals === true ? ("bounded" as const) : false,
      })),
    lazyMs: D1_REFRESH_MS,
    drainedByLog: true,
  };
}
