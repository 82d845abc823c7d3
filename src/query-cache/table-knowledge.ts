import type { PlanSchema } from "../core/deps/planner.ts";
import type { SqlTable } from "../database/analysis/shapes.ts";
import { catalogKinds, withoutCapturedForms } from "./columns.ts";
import type { StatementDatabase } from "./statement-contract.ts";

/** What TableKnowledge asks of its entry's database (which `attach` may change). */
type Described = Pick<
  StatementDatabase<unknown>,
  "tables" | "catalog" | "dialect" | "converts" | "isoInstants" | "learnAside"
>;

/**
 * What an entry on the statement cache knows of its tables: their keys, from the ORM's
 * table objects or capture's catalog, and their column kinds, read from the catalog while
 * capture is followed. A read's statement is analysed with `schema`: with the kinds,
 * conditions on other columns than the key register exactly (without capture, writes go
 * by table and exactness gains nothing).
 */
export class TableKnowledge {
  readonly #db: () => Described;
  /** Whether capture records floats and instants exactly (see `schema`). */
  readonly #exactForms: () => boolean;
  readonly #fault: (err: unknown) => void;
  /** Keys capture read from the database catalog (when the entry owns its engine). */
  #catalog: PlanSchema | undefined;
  /** Column kinds by table; null when none could be read. */
  readonly #kinds = new Map<string, Omit<SqlTable, "primaryKey"> | null>();
  /** Tables whose column kinds are being read. */
  readonly #learning = new Map<string, Promise<void>>();
  #version = 0;

  constructor(deps: {
    db: () => Described;
    exactForms: () => boolean;
    fault: (err: unknown) => void;
  }) {
    this.#db = deps.db;
    this.#exactForms = deps.exactForms;
    this.#fault = deps.fault;
  }

  /**
   * A number that changes whenever what this knows changes (the catalog's keys, a table's
   * kinds): what was read with `schema` at one version may be kept until the next.
   */
  get version(): number {
    return this.#version;
  }

  /** Takes the keys capture read from the catalog. */
  cataloged(schema: PlanSchema): void {
    this.#catalog = schema;
    this.#version++;
  }

  /** A table's primary key for the planner: the ORM's where it describes the table. */
  primaryKey(table: string): string | undefined {
    return this.#db().tables?.(table)?.primaryKey ?? this.#catalog?.primaryKey(table);
  }

  /**
   * What is known of a table: its primary key (none for a table captured without a
   * single-column one: read through lists alone), its column kinds.
   */
  schema = (table: string): SqlTable | undefined => {
    const db = this.#db();
    const known = db.tables ? db.tables(table) : this.#described(table);
    if (known === undefined) return undefined;
    // Floats and instants only where the changes compared with them are recorded exactly:
    // capture's triggers may record them otherwise, and a shared engine's are its owner's.
    return this.#exactForms() ? known : withoutCapturedForms(known);
  };

  /** A table read through lists alone: described or captured without a single-column key. */
  keyless(table: string): boolean {
    const db = this.#db();
    if (!db.tables) return this.#catalog?.keyless?.(table) === true;
    const known = db.tables(table);
    return known !== undefined && known.primaryKey === undefined;
  }

  /** Whether a table's column kinds are known (a patch writes values in their forms). */
  kindsKnown(table: string): boolean {
    return this.#db().tables !== undefined || this.#kinds.has(table);
  }

  /**
   * Reads the column kinds of those of `tables` with a known primary key; true if any were
   * read. With `learnAside`, not waited for (false): the read's conditions on other columns
   * than the key register coarser until they are in.
   */
  async learn(tables: readonly string[]): Promise<boolean> {
    const reads: Promise<void>[] = [];
    for (const table of tables) {
      if (this.#kinds.has(table) || this.schema(table) === undefined) continue;
      let read = this.#learning.get(table);
      if (!read) {
        read = this.#learnOne(table).finally(() => this.#learning.delete(table));
        this.#learning.set(table, read);
      }
      reads.push(read);
    }
    if (reads.length === 0 || this.#db().learnAside) return false;
    await Promise.all(reads);
    return true;
  }

  /** Forgets the column kinds (a statement the parser cannot read may have altered a table). */
  forgetKinds(): void {
    this.#kinds.clear();
    this.#version++;
  }

  /** A table as the catalog describes it (see `schema`). */
  #described(table: string): SqlTable | undefined {
    const primaryKey = this.#catalog?.primaryKey(table);
    if (primaryKey === undefined && !this.keyless(table)) return undefined;
    const { isoInstants, ...kinds } = this.#kinds.get(table) ?? {};
    const known: SqlTable = { ...(primaryKey !== undefined && { primaryKey }), ...kinds };
    if (isoInstants && this.#db().isoInstants?.()) known.isoInstants = isoInstants;
    const keys = this.#catalog?.keys?.(table);
    if (keys?.length) known.keys = keys;
    return known;
  }

  async #learnOne(table: string): Promise<void> {
    const db = this.#db();
    try {
      const catalog = (await db.catalog?.columns(table)) ?? [];
      const kinds = catalogKinds(catalog, db.dialect, db.converts);
      this.#kinds.set(table, catalog.length > 0 ? kinds : null);
    } catch (err) {
      this.#kinds.set(table, null);
      this.#fault(err);
    }
    this.#version++;
  }
}
