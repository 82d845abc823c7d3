import type { Cache } from "../core/cache/index.ts";
import type { LogPosition } from "../core/change-log/contract.ts";
import { sha256Hex } from "../core/digest.ts";
import { badOption } from "../core/errors.ts";
import type { Warner } from "../core/report.ts";
import type { HiddenKeys } from "../database/analysis/hidden-keys.ts";
import { type SqlShape, sqlShape } from "../database/analysis/shapes.ts";
import { writtenTables } from "../database/analysis/writes.ts";
import type { SqlClient, SqlResult } from "../database/client.ts";
import { clientKind } from "../database/client-kind.ts";
import type { ForeignKeyAction } from "../database/schema.ts";
import { Cascades } from "./cascades.ts";
import { decode, encode } from "./codec.ts";
import { groupPatcher } from "./group-patches.ts";
import { type QueryCapture, startCapture } from "./query-capture.ts";
import { followCapturedWrites } from "./result-patches.ts";
import { SearchPathNames } from "./search-path.ts";
import {
  type CachedStatements,
  type Catalog,
  type Lookup,
  type ResultForm,
  ROWS,
  type RunStatement,
  type StatementCacheOptions,
  type StatementCacheStats,
  type StatementDatabase,
  type StoreOptions,
  type Ticket,
} from "./statement-contract.ts";
import { QueryStats, queryEngine, unmaintainedShape } from "./stats.ts";
import { type Rerun, StoredResults } from "./stored-results.ts";
import { TableKnowledge } from "./table-knowledge.ts";

/**
 * A parameter whose value the database does not compare as given (a date or a decimal a
 * driver converts on the way): a condition on it is read as matching any row.
 */
export { NO_VALUE as UNREAD } from "../database/analysis/predicates.ts";

/** The part of `statements` an ORM's user is handed. */
export function cachedStatements<R>(statements: StatementCache<R>): CachedStatements {
  return {
    engine: statements.engine,
    getStats: () => statements.getStats(),
    catchUp: () => statements.catchUp(),
    invalidate: (tables) => statements.invalidate(tables),
  };
}

const TEXT = new TextDecoder();
/**
 * SQL statements cached, whoever runs them (raw SQL on a client, Kysely on its
 * connections): `read` runs a select (or answers it from the cache), `write` a write.
 * Reads register what they depend on from their SQL, as the Drizzle adapter's selects do;
 * writes are seen through change capture when it is installed, or invalidate the tables
 * they name otherwise. See docs/guides/sql.md.
 */
export class StatementCache<R = SqlResult> {
  readonly engine: Cache;
  #db: StatementDatabase<R>;
  #form: ResultForm<R>;
  #ttl: number;
  #prefix: string;
  #capture: QueryCapture | undefined;
  /** Without capture followed: the catalog's foreign keys only (see Cascades). */
  #catalogReader: QueryCapture | undefined;
  /** Foreign keys whose actions change other tables' rows. */
  readonly #cascades: Cascades;
  /** The first read of capture's catalog, awaited by the first query. */
  #ready: Promise<void> | undefined;
  #stats: QueryStats;
  /** Its tables' keys and column kinds (see TableKnowledge). */
  readonly #tables: TableKnowledge;
  /** Whether capture was followed at the last call (see #checkMode). */
  #following = false;
  /** Whether results are patched in place after captured writes (see `patchInPlace`). */
  #patching = false;
  /** What `attach` needs of the options the entry was made with. */
  readonly #follow: {
    follow: boolean;
    owns: boolean;
    outside: Parameters<typeof followCapturedWrites>[2];
    prefix: string;
    patchInPlace: boolean;
    reload: boolean;
    logger: Warner;
  };
  /** Removes the write hooks of capture's follower (see `close`). */
  #unhook: (() => void) | undefined;
  /** PostgreSQL: where the session's search path places tables named without a schema. */
  #names: SearchPathNames | undefined;
  /** The results it stores, and what each was read by (see StoredResults). */
  readonly #results: StoredResults<R>;

  constructor(db: StatementDatabase<R>, options: StatementCacheOptions) {
    const c = db.component;
    const follow = options.capture ?? true;
    if (typeof follow !== "boolean") badOption(c, "capture", "true or false", follow);
    const reload = options.reload ?? true;
    if (typeof reload !== "boolean") badOption(c, "reload", "true or false", reload);
    const patchInPlace = options.patchInPlace ?? true;
    if (typeof patchInPlace !== "boolean") {
      badOption(c, "patchInPlace", "true or false", patchInPlace);
    }
    this.#db = db;
    this.#tables = new TableKnowledge({
      db: () => this.#db,
      // Not a shared engine's (its owner's), nor where capture records them otherwise.
      exactForms: () => this.#follow.owns && this.#capture?.recordsForms() !== false,
      fault: (err) => this.#stats.fault("catalog", err),
    });
    const { engine, ttl, prefix, owns, outside } = queryEngine(c, options, db.defaultPrefix, {
      primaryKey: (table) => this.#tables.primaryKey(table),
      joinColumns: () => [],
      keyless: (table) => this.#tables.keyless(table),
    });
    this.#cascades = db.cascades ?? new Cascades();
    this.engine = engine;
    this.#form = db.form ?? (ROWS as unknown as ResultForm<R>);
    this.#ttl = ttl;
    this.#prefix = prefix;
    const logger = options.logger ?? { warn: (m, e) => console.warn(m, e ?? "") };
    this.#stats = new QueryStats(c, logger);
    this.#follow = { follow, owns, outside, prefix, patchInPlace, reload, logger };
    this.#results = new StoredResults({
      engine,
      db: () => this.#db,
      form: this.#form,
      stats: this.#stats,
      tables: this.#tables,
      prefix,
      ttl,
      names: () => this.#names,
      patching: () => this.#patching,
      maintained: () => this.#patching && this.#maintains(),
      captured: () => this.#capture?.stats().tables ?? [],
    });
    if (db.client !== undefined) this.attach(db.client, db.catalog);
  }

  /**
   * Follows the change capture of the application's `client` (or, with `capture: false`,
   * reads its foreign keys), and reads its `catalog`: for an entry whose client is known
   * only once the ORM connects (Prisma's adapter makes its own). A client given while one
   * is followed is ignored; after `close`, one may be attached again. `follow` overrides
   * the `capture` option (Drizzle's `withTransactions` says it), and `query` runs the
   * statements of group patches where the database gives none. Returns the follower.
   */
  attach(
    client: unknown,
    database?: Catalog & { dialect?: SqlClient["dialect"] },
    follow = this.#follow.follow,
    query?: StatementDatabase<R>["query"],
  ): QueryCapture | undefined {
    if (this.#capture || this.#catalogReader) return this.#capture;
    const dialect = database?.dialect ?? this.#db.dialect;
    this.#db = { ...this.#db, client, dialect, ...(database && { catalog: database }) };
    if (query && !this.#db.query) this.#db.query = query;
    const { owns, outside, prefix, patchInPlace, reload, logger } = this.#follow;
    if (this.#db.dialect === "postgres" && this.#db.catalog && !this.#names) {
      const warn = (m: string) => logger.warn(`[edgecache] [${this.#db.component}] ${m}`);
      this.#names = new SearchPathNames(this.#db.catalog, () => this.invalidate(), warn);
    }
    // The catalog's foreign keys, whether capture is followed or not (see Cascades).
    const catalog = {
      foreignKeys: (actions: ForeignKeyAction[]) => this.#cascades.setCatalog(actions),
      schemas: () => this.#cascades.schemas(),
      logger: { warn: (m: string) => logger.warn(m) },
    };
    if (!follow) {
      this.#catalogReader = startCapture(client, this.engine, { ...catalog, follow: false });
      return undefined;
    }
    this.#capture = startCapture(client, this.engine, {
      ...catalog,
      // A shared engine's schema is its owner's: events then go by table.
      ...(owns && {
        setSchema: (schema) => this.#tables.cataloged(schema),
        kinds: (table) => this.#tables.schema(table)?.columns,
      }),
    });
    this.#ready = this.#capture?.ready;
    // Following capture, every change reaches the planner with its rows, so the engine
    // can reload a hot query a write invalidated, or patch it: never on a shared
    // engine (its owner's).
    if (this.#capture && owns) {
      const form = this.#form;
      const followed = followCapturedWrites(this.engine, this.#capture, outside, {
        prefix,
        patchInPlace,
        ...(form.patched && {
          dressed: (kept: unknown, rows: unknown[]) => form.patched!(kept, rows),
        }),
        ...(reload && { refetch: (k: string) => this.#refetch(k) }),
        ...(this.#maintains() && { maintain: this.#groupPatcher(this.#db.query!) }),
      });
      this.#patching = followed.patching;
      this.#unhook = followed.detach;
    }
    return this.#capture;
  }

  /**
   * Answers a select from the cache, or runs it by `run` and caches it. `params` bind the
   * placeholders (`?` on SQLite and D1, `$1` on PostgreSQL) as the database compares them:
   * a parameter whose value the database sees otherwise (a date the driver converts) is
   * given as `UNREAD`, and what the statement reads is then widened past it. `keyed` is what
   * the cache key is made of beside the SQL (the parameters themselves by default). A
   * statement that is not a select is a `write`.
   */
  async read(
    sql: string,
    params: readonly unknown[],
    run: RunStatement<R>,
    keyed: unknown = params,
  ): Promise<R> {
    const looked = await this.lookup(sql, params, keyed);
    if (looked.found) return looked.result;
    if ("write" in looked) return this.write(sql, params, run);
    const result = await run(sql, params);
    await this.store(looked.ticket, result);
    return result;
  }

  /**
   * The first half of `read`: a select's result from the cache, or a ticket to run it and
   * `store` its result by, or word that the statement writes (run it by `write`).
   */
  async lookup(
    sql: string,
    params: readonly unknown[],
    keyed: unknown = params,
  ): Promise<Lookup<R>> {
    if (this.#ready) {
      await this.#ready;
      this.#ready = undefined;
    }
    await this.#checkMode();
    await this.seen(sql);
    // Where its connection is not held meanwhile (see `placed`), the search path is waited for.
    if (!this.#db.learnAside) await this.placed();
    const key = await this.#key(sql, keyed);
    const found = key === undefined ? undefined : await this.#found(key, sql);
    if (found) return found;
    const dialect = this.#db.dialect;
    const resolve = this.#names?.resolve;
    let shape = sqlShape(sql, params, dialect, this.#tables.schema, resolve);
    if (this.#following && (await this.#tables.learn(shape.tables))) {
      shape = sqlShape(sql, params, dialect, this.#tables.schema, resolve);
    }
    if (!readOnly(shape, sql)) return { found: false, write: true };
    await this.#capture?.want(shape.tables);
    // A new isolate's first read starts following capture here (a lazy capture reads its
    // catalog in `want`): the mode is taken now, before the query runs, so its result is
    // stored as one read while following, registered with the catalog's primary keys, and
    // the next read's check finds nothing to empty.
    if (!this.#following && (await this.#startsFollowing())) {
      await this.#tables.learn(shape.tables);
      shape = sqlShape(sql, params, dialect, this.#tables.schema, resolve);
      if (!readOnly(shape, sql)) return { found: false, write: true };
    }
    const answered = await this.#results.answered({ sql, params, shape }, sql);
    if (answered !== undefined) return { found: true, result: answered };
    this.#stats.lookup(false, sql);
    if (key !== undefined) this.engine.countRead(key, "miss");
    // Taken after `want`, just before the query runs, so its result is at least this new: a
    // new isolate's first read has by then its log started (capture's first drain), and a
    // position taken before it, on no log yet, would fence the result out.
    const since = this.engine.position;
    return {
      found: false,
      ticket: { key, since, read: { sql, params: [...params], keyed, shape } },
    };
  }

  /**
   * `lookup` by a key the ORM made (Drizzle's own, under this entry's prefix: `q:<hash>`),
   * for an ORM that runs the statement between its own two calls; `sql` counts the lookup
   * under its query shape, and `tables` are those the ORM says it reads (capture is told).
   * With the statement (`query`), a lookup of one row may be answered from a held result;
   * where the ORM lets the entry run it (`hides`), a miss says how to run it with the base
   * columns it does not show carried (`hidden`: see database/analysis/hidden-keys.ts), and a
   * held result answers as that statement would.
   */
  async lookupKey(
    name: string,
    sql?: string,
    tables: readonly string[] = [],
    query?: StoreOptions<R>["query"],
    hides = false,
  ): Promise<{ found: true; result: R } | { found: false; ticket: Ticket; hidden?: HiddenKeys }> {
    await this.#capture?.want(tables);
    const key = this.key(name);
    const found = await this.#found(key, sql);
    if (found) return found;
    let read = query && this.#results.ormRead(query);
    // Following capture, a statement the ORM lets this entry run may carry hidden keys.
    const hiding = hides && read && this.#capture?.mode() === "capture";
    const hidden = hiding ? this.#results.hiddenRead(read!, query!.dialect) : undefined;
    if (hidden) read = hidden.read;
    const answered = read && (await this.#results.answered(read, sql));
    if (answered !== undefined) return { found: true, result: answered };
    this.#stats.lookup(false, sql);
    this.engine.countRead(key, "miss");
    // The query runs after this returns, so its result is at least this new.
    const ticket = { key, since: this.engine.position };
    return { found: false, ticket, ...(hidden && { hidden: hidden.hidden }) };
  }

  /** `key`'s cached result, counted as a hit; undefined (not counted) when it is not held. */
  async #found(
    key: string,
    sql: string | undefined,
  ): Promise<{ found: true; result: R } | undefined> {
    try {
      const entry = await this.engine.getEntry(key);
      if (!entry) return undefined;
      // Decoded first: a damaged entry is a fault and a miss, not a hit.
      const result = this.#form.restored(decode(TEXT.decode(entry.body)));
      this.#stats.lookup(true, sql);
      return { found: true, result };
    } catch (err) {
      this.#stats.fault("get", err);
      return undefined;
    }
  }

  /**
   * The second half of `read`: keeps the result of a statement `lookup` missed (unless a
   * write since its ticket's position concerns it: the write fence). `since` undefined
   * refuses it as fenced (an ORM that cannot pair its result with its lookup). True when
   * it was stored.
   */
  store(
    ticket: Pick<Ticket, "key" | "read"> & { since: LogPosition | undefined },
    result: R,
    options: StoreOptions<R> = {},
  ): Promise<boolean> {
    const { key, since, read } = ticket;
    if (key === undefined || (read && !this.#results.cacheable(read.shape))) {
      this.#stats.counts.uncacheable++;
      return Promise.resolve(false);
    }
    const rerun: Rerun<R> = read
      ? {
          run: this.#db.rerun && (() => this.#db.rerun!(read.sql, read.params, read.keyed)),
          options: { ...options, shape: read.shape, sql: read.sql, params: read.params },
        }
      : { run: options.rerun, options };
    return this.#results.store(key, result, since, rerun);
  }

  /**
   * Reloads `key` in the background: its query runs again and the result is stored as a
   * load that began now, so a write that overlaps the reload fences it out.
   */
  async #refetch(key: string): Promise<void> {
    const rerun = this.#results.rerunOf(key);
    if (!rerun?.run || this.#capture?.mode() !== "capture") return;
    const since = this.engine.position;
    const result = await rerun.run();
    await this.#results.store(key, result, since, rerun);
  }

  /**
   * Whether results are kept by group patches: where the entry runs statements of its own
   * (`query`), and not on D1, where inside workerd a group patch's statement, run after the
   * write's record is applied, was seen never to settle (test/sql/d1-groups-in-workerd).
   */
  #maintains(): boolean {
    return this.#db.query !== undefined && clientKind(this.#db.client) !== "d1";
  }

  /** The engine's `maintain` hook: group patches, by statements run with `query`. */
  #groupPatcher(query: NonNullable<StatementDatabase<R>["query"]>) {
    return groupPatcher<R>({
      dialect: this.#db.dialect,
      readOf: (key) => this.#results.readOf(key),
      query,
      form: this.#form,
      store: (key, result, at, ttl) => this.#results.storeAgain(key, result, at, ttl),
      counts: this.#stats.groups,
      fault: (err) => this.#stats.fault("group patch", err),
      now: () => Date.now(),
    });
  }

  /**
   * Runs a write by `run` and returns once the cache has seen it: with change capture
   * followed for its tables, once capture has applied its rows (entries its rows do not
   * touch stay); otherwise after removing every entry that read the tables it names, or
   * every entry of this cache when the statement names none it can tell (DDL, a `WITH`
   * clause...).
   */
  async write<T = R>(sql: string, params: readonly unknown[], run: RunStatement<T>): Promise<T> {
    await this.#checkMode();
    const tables = await this.tablesWritten(sql);
    if (tables) await this.#capture?.want(tables);
    try {
      return await run(sql, params);
    } finally {
      // Also after a failure: a driver error may come after the commit.
      await this.written(tables);
    }
  }

  /**
   * The tables a write statement names as its target, those named without a schema placed
   * by the session's search path; undefined when that cannot be told (see writtenTables).
   */
  async tablesWritten(sql: string): Promise<string[] | undefined> {
    await this.seen(sql);
    return writtenTables(sql, this.#db.dialect, this.#names?.resolve);
  }

  /**
   * Notes a statement the application runs through this entry, cached or not (inside a
   * transaction too): one that changes the session's search path or role empties this
   * entry's reads, whose bare names it may have moved to other tables.
   */
  async seen(sql: string): Promise<void> {
    if (this.#names?.seen(sql)) await this.invalidate();
  }

  /**
   * Resolves once tables named without a schema can be placed (the search path read), or
   * at once. Awaited where no connection of the application's is held meanwhile: before
   * one is taken from a pool the path is read on.
   */
  placed(): Promise<void> {
    return this.#names?.pending() ?? Promise.resolve();
  }

  /**
   * Removes every cached read of `tables` (names as in the SQL: `users`, `app.users`), or
   * every read this entry cached when called without: for writes made around it without
   * change capture (another process, a transaction run on the client itself). On
   * PostgreSQL a bare name is the table the search path places it on, as in a statement.
   */
  invalidate(tables?: readonly string[]): Promise<void> {
    return this.#invalidate(
      tables && (this.#names ? this.#names.placedNames(tables) : [...tables]),
    );
  }

  /**
   * Removes every cached read of `tables` as named (no search path places them: Drizzle's
   * names), and every read stored with one of `tags` (see `tag`).
   */
  drop(tables: readonly string[], tags: readonly string[] = []): Promise<void> {
    return this.#invalidate(tables, tags);
  }

  /** The key of a read by the key an ORM made, `name` (see `lookupKey`). */
  key(name: string): string {
    return this.#prefix + name;
  }

  /** The time to live of a cached query in ms, unless a read says otherwise. */
  get ttl(): number {
    return this.#ttl;
  }

  /**
   * Removes every cached read of `tables` as the cache names them, or of every table, and
   * those stored with `tags`.
   */
  async #invalidate(tables: readonly string[] | undefined, tags: readonly string[] = []) {
    try {
      if (tables === undefined) await this.engine.invalidate({ prefix: this.#prefix });
      else if (tables.length + tags.length > 0) {
        const tagged = [
          ...tables.map((t) => this.#results.tableTag(t)),
          ...tags.map((t) => this.#results.userTag(t)),
        ];
        await this.engine.invalidate({ tags: tagged });
      }
    } catch (err) {
      this.#stats.fault("invalidate", err);
    }
  }

  /**
   * Whether capture's changes of `table` (a name as the ORM declares it) are those of the
   * table its statements reach. A table declared without a schema is named as capture names
   * `public`'s, but PostgreSQL finds it through the session's search path
   * (`-c search_path=app`): where that is another schema's table, or cannot be told, its
   * writes go by table, never settled by the changes of `public`'s table of that name.
   */
  capturedAs(table: string): boolean {
    if (!this.#names || table.includes(".")) return true;
    return this.#names.resolve(table) === "public";
  }

  /** Resolves once the database's catalog has been read a first time (when it is read at all). */
  async catalogRead(): Promise<void> {
    await (this.#capture ?? this.#catalogReader)?.started;
  }

  /**
   * Resolves once every change capture recorded before the call has been applied (true),
   * or at once with false when this entry does not follow capture. A write made around the
   * entry (another connection) is seen by reads after this.
   */
  async catchUp(): Promise<boolean> {
    return (await this.#capture?.catchUp()) ?? false;
  }

  getStats(): StatementCacheStats {
    const tag = (t: string) => this.#results.tableTag(t);
    const stats = this.#stats.stats(this.engine, this.#prefix, tag, this.#capture);
    // Maintained only where this entry can run the statements of group patches.
    if (this.#maintains() && this.#patching) return stats;
    return { ...stats, shapes: stats.shapes.map(unmaintainedShape) };
  }

  /** Stops following change capture. The client stays open: it is the application's. */
  async close(): Promise<void> {
    this.#names?.close();
    this.#names = undefined;
    const capture = this.#capture;
    const reader = this.#catalogReader;
    this.#capture = this.#catalogReader = this.#ready = undefined;
    this.#unhook?.();
    this.#unhook = undefined;
    this.#patching = this.#following = false;
    await capture?.close();
    await reader?.close();
  }

  /**
   * Empties this entry's reads when it starts following capture: those stored before were
   * registered without the catalog (a table named in another case than capture names it),
   * and only reads registered while following are sure to be reached by capture's rows.
   */
  async #checkMode(): Promise<void> {
    const following = this.#capture?.mode() === "capture";
    if (following && !this.#following) await this.invalidate();
    this.#following = following;
  }

  /** Checks the mode again (see #checkMode); true when this entry now follows capture. */
  async #startsFollowing(): Promise<boolean> {
    await this.#checkMode();
    return this.#following;
  }

  /**
   * Returns once the cache has seen writes to `tables` (undefined: tables it cannot tell)
   * that committed before the call: made by `write`, or by a transaction that ran its
   * statements on a connection of its own and has just committed.
   */
  async written(named: readonly string[] | undefined): Promise<void> {
    // A statement it cannot read may have altered a table: its columns are read again, and
    // the tables bare names reach.
    if (named === undefined) {
      this.#tables.forgetKinds();
      this.#names?.schemaChanged();
    }
    // The tables its foreign keys' actions change too (ON DELETE CASCADE...).
    let tables = named;
    if (named) {
      const reader = this.#capture ?? this.#catalogReader;
      await reader?.started;
      for (const t of named) this.#cascades.note(t);
      await reader?.foreignKeysRead();
      tables = this.#cascades.reach(named);
    }
    if (tables && this.#capture && (await this.#capture.settled(tables))) return;
    await this.#invalidate(tables);
  }

  /** The key of a statement with its parameters, or undefined when they cannot be encoded. */
  async #key(sql: string, keyed: unknown): Promise<string | undefined> {
    let text: string;
    try {
      text = encode([this.#db.dialect, sql, keyed]);
    } catch {
      return undefined;
    }
    return `${this.#prefix}q:${await sha256Hex(text)}`;
  }
}

/**
 * Whether a statement only reads: a select (a data-modifying CTE is not). One the parser
 * cannot read counts when it is a single statement starting with SELECT; it names no
 * tables, so it runs uncached.
 */
function readOnly(shape: SqlShape, sql: string): boolean {
  if (shape.fallback === "parse") {
    return /^\s*\(?\s*select\b/i.test(sql) && !sql.replace(/;\s*$/, "").includes(";");
  }
  if (shape.fallback === "not-select" || shape.fallback === "statements") return false;
  return !(shape.fallback === "cte" && /\b(insert|update|delete|merge)\b/i.test(sql));
}
