import type { Cache } from "../core/cache/index.ts";
import type { EntryInit, WriteHooks } from "../core/cache/types.ts";
import type { Row } from "../core/data/query.ts";
import type { CacheEntry } from "../core/entries/entry.ts";
import { patchResult, type ResultPlan, resultPlan, tableRows } from "../database/analysis/patch.ts";
import { resultRows, type SqlShape, type SqlTable } from "../database/analysis/shapes.ts";
import { decode, encode, Uncacheable } from "./codec.ts";
import type { QueryCapture } from "./query-capture.ts";
import type { CapturedWrites } from "./stats.ts";

/**
 * Patch in place for the query caches (the Drizzle adapter, the raw SQL entry): the
 * engine's `patch` hook over results stored by `encode`, whose entries keep in their meta
 * how their rows are table rows (`ResultMeta`). The rules are database/analysis/patch.ts's; this
 * only reads and writes the cached bytes.
 */

/** What a query cache keeps in a patchable result's entry. */
export interface ResultMeta {
  plan: ResultPlan;
}

const TEXT = new TextDecoder();

/** A kept result with other rows, or undefined where the driver's form cannot be told. */
type Dressed = (kept: unknown, rows: unknown[]) => unknown;

/** The meta to store with a select's result, when the result can be patched later. */
export function patchableMeta(
  shape: SqlShape,
  table: (name: string) => SqlTable | undefined,
): ResultMeta | undefined {
  const name = shape.lists?.table;
  const plan = name === undefined ? undefined : resultPlan(shape, table(name));
  return plan && { plan };
}

/**
 * The write hooks of a query cache that owns its engine and follows `capture`: `refetch`
 * reloads hot invalidated results, and where captured writes come in an order patches may
 * follow, results are patched in place: where this process consumes the change table
 * (SQLite, PostgreSQL) their records are then ordered on the engine's own log
 * (`captured`); on D1 the log's object orders the records it drains. Returns whether
 * results are patched, and a function that removes the hooks.
 */
export function followCapturedWrites(
  engine: Cache,
  capture: QueryCapture,
  captured: CapturedWrites | undefined,
  options: {
    prefix: string;
    patchInPlace: boolean;
    refetch?: (key: string) => Promise<void>;
    /** A kept result with a patch's rows (ResultForm's `patched`; withRows by default). */
    dressed?: Dressed;
    /** Keeps what patches cannot, after the write (group patches; see WriteHooks.maintain). */
    maintain?: WriteHooks["maintain"];
  },
): { patching: boolean; detach: () => void } {
  const ordered = options.patchInPlace && captured ? capture.orderedWrites() : undefined;
  if (ordered) captured!.follow(ordered);
  const patching = ordered !== undefined || (options.patchInPlace && capture.ordersOnLog());
  const detach = engine.addWriteHooks({
    prefix: options.prefix,
    ...(options.refetch && { refetch: options.refetch }),
    ...(patching && {
      patch: resultPatcher(engine, options.prefix, (v) => capture.exactReals()(v), options.dressed),
      ...(options.maintain && { maintain: options.maintain }),
    }),
  });
  return { patching, detach };
}

/**
 * The engine's patch hook for the entries under `prefix`: a cached result after a write,
 * or undefined (the entry is then invalidated, as without patches). `exactReals` says
 * whether captured fractions are exact (see patchResult); `dressed` makes the kept result
 * with the patched rows.
 */
export function resultPatcher(
  engine: Pick<Cache, "pagesOf">,
  prefix: string,
  exactReals: (value: number) => boolean,
  dressed: Dressed = withRows,
): NonNullable<WriteHooks["patch"]> {
  return (key, entry, events, peek) => {
    const plan = planOf(key, entry, prefix);
    if (!plan || (entry.lists?.length ?? 0) > 1) return undefined;
    const response = decode(TEXT.decode(entry.body));
    const raw = resultRows(response);
    if (!raw) return undefined;
    const list = entry.lists?.[0];
    // Other pages of the list only where the response is known to be no further along than
    // the records applied here (`peek` given: see WriteHooks.patch).
    const pages =
      peek && list
        ? {
            key,
            // Asked only when the page alone cannot be patched (see patchResult).
            get of() {
              return engine.pagesOf(list);
            },
            rowsOf: (other: string): readonly Row[] | undefined => {
              const page = peek(other);
              const p = page && planOf(other, page, prefix);
              if (!p || p.table !== plan.table || p.lookup !== undefined) return undefined;
              const rows = resultRows(decode(TEXT.decode(page!.body)));
              return rows && tableRows(p, rows);
            },
          }
        : undefined;
    const cached = { list, tags: entry.tags };
    const aligned = peek !== undefined;
    const patched = patchResult(plan, cached, raw, events, aligned, pages, exactReals);
    if (!patched) return undefined;
    const result = dressed(response, patched.rows);
    if (result === undefined) return undefined;
    let body: string;
    try {
      body = encode(result);
    } catch (err) {
      if (err instanceof Uncacheable) return undefined;
      throw err;
    }
    const init: EntryInit = {
      body,
      headers: entry.headers,
      tags: patched.tags,
      meta: entry.meta,
      ...(patched.list && { lists: [patched.list] }),
    };
    return init;
  };
}

function planOf(key: string, entry: CacheEntry, prefix: string): ResultPlan | undefined {
  if (!key.startsWith(prefix) || entry.status !== 200) return undefined;
  return (entry.meta as ResultMeta | undefined)?.plan;
}

/**
 * A driver's result with other rows: an array of rows (its own other properties kept, as
 * postgres.js' results carry `count` and `columns`), or an object with `rows` (libSQL's
 * `ResultSet`, as `encode` keeps it).
 */
export function withRows(response: unknown, rows: unknown[]): unknown {
  if (!Array.isArray(response)) return { ...(response as object), rows };
  const out: unknown[] = [...rows];
  for (const p of Object.getOwnPropertyNames(response)) {
    if (p === "length" || /^(0|[1-9]\d*)$/.test(p)) continue;
    Object.defineProperty(out, p, Object.getOwnPropertyDescriptor(response, p)!);
  }
  return out;
}
