import { keepDue, nextDue, summarize, type UrlReport } from "../../app/proxy/manifest/keeper.ts";
import { badOption, checkOptionNames, EdgecacheError } from "../../core/errors.ts";
import type { SqlStorageLike } from "../../stores/durable-object-host.ts";
import { Background } from "./background.ts";
import { objectLogger } from "./logger.ts";
import { type ManifestStateLike, manifestPolicy, workerManifest } from "./manifest-client.ts";
import {
  type EdgecacheProxyWorkerOptions,
  PROXY_WORKER_OPTIONS,
  type ProxyEnv,
  proxyCache,
} from "./proxy-worker.ts";

/**
 * One alarm starts no fetch after this long (an alarm handler may run 15 minutes): the URLs
 * still due are the next alarm's, set for at once.
 */
export const MANIFEST_RUN_MS = 30_000;
/**
 * Set before a run starts, replaced by the run's own next time when it ends: a run cut short
 * (the object reset, an exception) is taken up again this much later.
 */
const WATCHDOG_MS = 60_000;
const C = "manifest-object";

/**
 * The Durable Object class that keeps a proxy Worker's manifest cached: bind it as `MANIFEST`
 * (a `durable_objects` binding, the class in `new_sqlite_classes`) and export it beside the
 * Worker, made from the same options.
 *
 * One object (per namespace) holds each URL's state in its SQLite, so it outlives the object's
 * restarts, and its alarm wakes at the next URL due. The alarm's run fetches the due URLs
 * through the same proxy as the Worker's (`createProxy` over the same tiers and change log:
 * the Durable Object tier, the Cache API of the object's location, KV), `manifestConcurrency`
 * at a time, with the keeper's rules (refresh a tenth of the lifetime before expiry, retry a
 * refusal after 1 s doubling to 5 min, jittered): isolates find what it stored in the shared
 * tiers. No timer lives in an isolate, so the origin sees one keeper however many isolates run.
 *
 * @example
 * ```ts
 * const options = { origins: [{ origin: "https://api.example.com" }], manifest: ["/v1/users?page={1..20}"] };
 * export const ManifestObject = proxyManifestObject(options);
 * export default edgecacheProxyWorker(options);
 * ```
 */
export function proxyManifestObject<E extends ProxyEnv = ProxyEnv>(
  options: EdgecacheProxyWorkerOptions,
): new (
  state: ManifestStateLike,
  env: E,
) => { fetch(request: Request): Promise<Response>; alarm(): Promise<void> } {
  if (typeof options !== "object" || options === null || !Array.isArray(options.origins)) {
    badOption(C, "origins", "the proxy Worker's options, with its origins", options?.origins);
  }
  checkOptionNames(C, options, PROXY_WORKER_OPTIONS);
  const policy = manifestPolicy(options);
  return class ManifestObject {
    readonly #state: ManifestStateLike;
    readonly #env: E;
    readonly #background = new Background();
    #book: ManifestBook | undefined;
    #proxy: ReturnType<typeof proxyCache> | undefined;

    constructor(state: ManifestStateLike, env: E) {
      this.#state = state;
      this.#env = env;
    }

    async fetch(request: Request): Promise<Response> {
      const op = new URL(request.url).pathname.slice(1);
      const { base } = (await request.json()) as { base: string | null };
      try {
        this.#book ??= new ManifestBook(
          this.#state.storage.sql,
          workerManifest(this.#env, options),
        );
        const slots = this.#book.slots(base ?? undefined);
        if (op === "start") await this.#arm(nextDue(slots));
        if (op === "report") return Response.json({ urls: slots });
        return Response.json(summarize(slots));
      } catch (error) {
        const status = error instanceof EdgecacheError && error.code === "E_BAD_OPTION" ? 400 : 500;
        return new Response(String((error as Error)?.message ?? error), { status });
      }
    }

    async alarm(): Promise<void> {
      try {
        this.#book ??= new ManifestBook(
          this.#state.storage.sql,
          workerManifest(this.#env, options),
        );
        this.#proxy ??= proxyCache(this.#env, options, this.#background);
      } catch (error) {
        if (!(error instanceof EdgecacheError && error.code === "E_BAD_OPTION")) throw error;
        // A bad manifest line or variable (EDGECACHE_MANIFEST, say): every isolate's request
        // fails naming it too. The schedule stops here rather than fail on every alarm; the
        // first isolate that starts once it is fixed arms the alarm again.
        objectLogger(this.#env).error(
          `[edgecache] [${C}] the manifest is not kept: ${error.message}`,
        );
        return this.#state.storage.deleteAlarm();
      }
      const book = this.#book;
      const slots = book.slots(undefined);
      if (slots.length === 0) return;
      await this.#state.storage.setAlarm(Date.now() + WATCHDOG_MS);
      const { proxy, log, settings, logger } = this.#proxy;
      // Caching off: fetches would store nothing. An isolate's start arms the alarm again.
      if (!settings.caching) return this.#state.storage.deleteAlarm();
      // Up to the log's head, so what is stored is at a position no older than the purges and
      // writes acknowledged before the run.
      await log.sync().catch((error) => {
        logger.warn(`[edgecache] [${C}] change log unreachable: ${String(error)}`);
      });
      const next = await keepDue(
        slots,
        (url, refresh) => proxy.keep(url, refresh),
        policy,
        (slot) => book.save(slot),
        Date.now() + MANIFEST_RUN_MS,
      );
      // The copies into the shared tiers are background work: done before the run ends.
      await proxy.drain();
      await this.#background.idle();
      if (next !== undefined) await this.#state.storage.setAlarm(Math.max(next, Date.now()));
    }

    /** Sets the alarm for `due` unless one is set sooner (alarms outlive restarts). */
    async #arm(due: number | undefined): Promise<void> {
      if (due === undefined) return;
      const alarm = await this.#state.storage.getAlarm();
      if (alarm === null || alarm > due) {
        await this.#state.storage.setAlarm(Math.max(due, Date.now()));
      }
    }
  };
}

/**
 * Each URL's state in the object's SQLite, one row a URL, and the base its paths resolve
 * against. The object answers one event at a time between awaits and this code never awaits,
 * so a report never sees a half-saved state.
 */
class ManifestBook {
  readonly #sql: SqlStorageLike;
  readonly #lines: readonly string[];
  #slots: UrlReport[] | undefined;

  constructor(sql: SqlStorageLike, lines: readonly string[]) {
    this.#sql = sql;
    this.#lines = lines;
    sql.exec(
      "CREATE TABLE IF NOT EXISTS manifest_urls (url TEXT PRIMARY KEY, report TEXT NOT NULL)",
    );
    sql.exec("CREATE TABLE IF NOT EXISTS manifest_meta (key TEXT PRIMARY KEY, value TEXT)");
  }

  /**
   * The manifest's URLs with their states: the saved ones, and new URLs (a deploy changed
   * the list) pending. Rows of URLs no longer listed are dropped. Until a base is known
   * (no isolate has started it), URLs that are paths cannot be fetched: an empty list.
   */
  slots(offered: string | undefined): UrlReport[] {
    if (this.#slots) return this.#slots;
    let base = this.#meta("base");
    if (base === undefined && offered !== undefined) {
      base = new URL(offered).origin;
      this.#sql.exec("INSERT OR REPLACE INTO manifest_meta (key, value) VALUES ('base', ?)", base);
    }
    const absolute = (u: string) => (/^https?:\/\//i.test(u) ? u : undefined);
    const urls = this.#lines
      .map((u) => (base === undefined ? absolute(u) : new URL(u, base).href))
      .filter((u): u is string => u !== undefined);
    const saved = new Map<string, UrlReport>();
    for (const row of this.#sql.exec("SELECT url, report FROM manifest_urls")) {
      saved.set(String(row.url), JSON.parse(String(row.report)) as UrlReport);
    }
    const listed = new Set(urls);
    for (const url of saved.keys()) {
      if (!listed.has(url)) this.#sql.exec("DELETE FROM manifest_urls WHERE url = ?", url);
    }
    const slots = urls.map((url) => saved.get(url) ?? { url, state: "pending" as const });
    // Kept in memory only once every path could be resolved: a later base completes it.
    if (base !== undefined || slots.length === this.#lines.length) this.#slots = slots;
    return slots;
  }

  save(slot: UrlReport): void {
    this.#sql.exec(
      "INSERT OR REPLACE INTO manifest_urls (url, report) VALUES (?, ?)",
      slot.url,
      JSON.stringify(slot),
    );
  }

  #meta(key: string): string | undefined {
    for (const row of this.#sql.exec("SELECT value FROM manifest_meta WHERE key = ?", key)) {
      return String(row.value);
    }
    return undefined;
  }
}
