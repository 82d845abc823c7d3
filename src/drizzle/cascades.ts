import { Cascades, CHANGING } from "../query-cache/cascades.ts";
import { tableName } from "./tables.ts";

/** Foreign keys of Drizzle's tables, for the query cache's cascades (see Cascades). */

// Drizzle's symbols are registered globally (`Symbol.for`): read without importing drizzle-orm.
const ENTITY_KIND = Symbol.for("drizzle:entityKind");
const COLUMNS = Symbol.for("drizzle:Columns");
const EXTRA_CONFIG = Symbol.for("drizzle:ExtraConfigBuilder");
const INLINE_FOREIGN_KEYS = [
  Symbol.for("drizzle:SQLiteInlineForeignKeys"),
  Symbol.for("drizzle:PgInlineForeignKeys"),
  Symbol.for("drizzle:MySqlInlineForeignKeys"),
];

/** A Drizzle foreign key (`.references(...)` or `foreignKey(...)`), as far as it is read. */
interface DrizzleForeignKey {
  reference(): { foreignTable: object };
  onDelete?: string;
  onUpdate?: string;
}

/** The query cache's cascades, which also learn the foreign keys of Drizzle's tables. */
export class DrizzleCascades extends Cascades {
  #seen = new WeakSet<object>();

  /**
   * A Drizzle table's own foreign keys (as `getTableConfig` reads them), for databases whose
   * catalog is out of reach (a client capture does not know). Only tables the cache has seen
   * teach it: a child table no query used is not known this way.
   */
  learn(table: object): void {
    if (this.#seen.has(table)) return;
    this.#seen.add(table);
    this.note(tableName(table));
    for (const fk of drizzleForeignKeys(table)) {
      const actions = [fk.onDelete, fk.onUpdate].map((a) => String(a ?? "").toUpperCase());
      if (!actions.some((a) => CHANGING.has(a))) continue;
      try {
        this.declare(tableName(fk.reference().foreignTable), tableName(table));
      } catch {
        // A reference Drizzle cannot resolve (a table defined later, a bad callback): skipped.
      }
    }
  }
}

/** The foreign keys of a Drizzle table: inline ones, then those of its extra config. */
function drizzleForeignKeys(table: object): DrizzleForeignKey[] {
  const t = table as Record<symbol, unknown>;
  const out: DrizzleForeignKey[] = [];
  for (const symbol of INLINE_FOREIGN_KEYS) {
    const inline = t[symbol];
    if (Array.isArray(inline)) out.push(...(inline as DrizzleForeignKey[]));
  }
  const extra = t[EXTRA_CONFIG];
  if (typeof extra !== "function") return out;
  try {
    const config = extra(t[COLUMNS]) as unknown;
    const values = Array.isArray(config) ? config.flat(1) : Object.values(config ?? {});
    for (const builder of values as { build?: (table: object) => unknown }[]) {
      const kind = (builder?.constructor as unknown as Record<symbol, unknown> | undefined)?.[
        ENTITY_KIND
      ];
      if (typeof kind === "string" && kind.endsWith("ForeignKeyBuilder") && builder.build) {
        out.push(builder.build(table) as DrizzleForeignKey);
      }
    }
  } catch {
    // An extra config that throws outside Drizzle's own call: its foreign keys stay unknown.
  }
  return out;
}
