import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { createCache, EdgecacheError } from "../../src/index.ts";
import { memoryStore } from "../../src/stores/memory.ts";

/**
 * Every public entry point (package.json's exports, read from its source) and every function
 * or class it exports: each one that takes an options object is called here with a key it
 * does not know, and must refuse it with E_BAD_OPTION naming the key. A new export that is
 * neither called here nor listed as taking no options fails the test, so the list cannot
 * go stale.
 */
const pkg = JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as {
  exports: Record<string, string | { default?: string }>;
};
const entries = Object.entries(pkg.exports)
  .map(([name, target]) => [name, typeof target === "string" ? target : target.default] as const)
  .filter(([, target]) => target?.endsWith(".js"))
  .map(
    ([name, target]) =>
      [name, target!.replace(/^\.\/dist\//, "src/").replace(/\.js$/, ".ts")] as [string, string],
  );

const BAD = { nonsense: 1 };
const cache = () => createCache({ tiers: [memoryStore()] });
const fakeFn = () => {};

/** How each factory is called with an unknown option (BAD, or BAD's key beside required ones). */
const CALLS: Record<string, (f: never) => unknown> = {
  Cache: (C: new (o: unknown) => unknown) => new C({ tiers: [memoryStore()], ...BAD }),
  createCache: (f: (o: unknown) => unknown) => f({ tiers: [memoryStore()], ...BAD }),
  Namespace: () => cache().namespace("n", BAD as never),
  localChangeLog: (f: (o: unknown) => unknown) => f(BAD),
  validateConfig: (f: (o: unknown) => unknown) => f(BAD),
  createNodeEdgecache: (f: (o: unknown) => unknown) => f(BAD),
  createNodeProxy: (f: (o: unknown) => unknown) => f(BAD),
  startServer: (f: (o: unknown) => unknown) => f({ app: { fetch: fakeFn }, ...BAD }),
  scheduleWarm: (f: (...a: unknown[]) => unknown) => f(cache(), "* * * * *", fakeFn, fakeFn, BAD),
  createAdminApi: (f: (o: unknown) => unknown) => f({ cache: cache(), ...BAD }),
  createDataApi: (f: (o: unknown) => unknown) => f({ cache: cache(), ...BAD }),
  createProxy: (f: (o: unknown) => unknown) => f({ cache: cache(), ...BAD }),
  cacheTierObject: (f: (o: unknown) => unknown) => f(BAD),
  proxyManifestObject: (f: (o: unknown) => unknown) => f({ origins: [], ...BAD }),
  postgresChangeLogObject: (f: (...a: unknown[]) => unknown) => f(fakeFn, BAD),
  edgecacheProxyWorker: (f: (o: unknown) => unknown) => f({ origins: [], ...BAD }),
  edgecacheTenantsWorker: (f: (o: unknown) => unknown) => f(BAD),
  edgecacheWorker: (f: (o: unknown) => unknown) => f(BAD),
  seedD1Demo: (f: (...a: unknown[]) => unknown) => f({}, BAD),
  DurableChangeLog: (C: new (o: unknown) => unknown) => new C(BAD),
  durableChangeLog: (f: (o: unknown) => unknown) => f(BAD),
  cacheApiStore: (f: (o: unknown) => unknown) => f(BAD),
  durableObjectStore: (f: (o: unknown) => unknown) => f(BAD),
  kvStore: (f: (o: unknown) => unknown) => f(BAD),
  memoryStore: (f: (o: unknown) => unknown) => f(BAD),
  sqliteStore: (f: (o: unknown) => unknown) => f({ path: ":memory:", ...BAD }),
  redisStore: (f: (o: unknown) => unknown) => f(BAD),
  sqliteSource: (f: (o: unknown) => unknown) => f(BAD),
  postgresSource: (f: (o: unknown) => unknown) => f(BAD),
  d1Source: (f: (o: unknown) => unknown) => f(BAD),
  drizzleCache: (f: (o: unknown) => unknown) => f(BAD),
  EdgecacheDrizzleCache: (C: new (o: unknown) => unknown) => new C(BAD),
  withTransactions: (f: (...a: unknown[]) => unknown) => f({}, BAD),
  betterSqliteProxy: (f: (...a: unknown[]) => unknown) => f({}, BAD),
  sqlCache: (f: (o: unknown) => unknown) => f(BAD),
  SqlCache: (C: new (o: unknown) => unknown) => new C(BAD),
  kyselyCache: (f: (...a: unknown[]) => unknown) => f({}, BAD),
  prismaCache: (f: (...a: unknown[]) => unknown) => f({}, BAD),
};

/** Exports that take no options object, each with why. */
const NO_OPTIONS: Record<string, string> = {
  strongEtag: "bytes",
  deferredBody: "an entry",
  planSchemaOf: "a schema",
  planWrite: "a write and lookups",
  rowTag: "names",
  setTag: "names",
  tableTag: "a name",
  EdgecacheError: "an error",
  requestKey: "a request",
  parseListQuery: "a query string",
  toPrometheus: "stats",
  loadConfig: "a path (its file goes through validateConfig)",
  nodeOriginFetch: "none",
  peerAddress: "a context",
  CacheTierObject: "the runtime's state and env",
  precomputeStats: "a cache",
  ChangeLogObject: "the runtime's state and env",
  TenantsObject: "the runtime's state and env",
  postgresCatalog: "a URL",
  isPostgresUrl: "a URL",
  redactUrl: "a URL",
  ttlOf: "a Drizzle config",
  tableName: "a table",
  seedDemo: "a database and sizes (the testing kit's)",
  demoRows: "sizes (the testing kit's)",
  demoViews: "none",
  Recorder: "none (the testing kit's)",
  captureFeedConformance: "a test suite: its fixture is the test's own",
  changeLogConformance: "a test suite: its options are the test's own",
  ormAdapterConformance: "a test suite: its fixture is the test's own",
  sourceConformance: "a test suite: its options are the test's own",
  sqlClientConformance: "a test suite: its options are the test's own",
  sqlDriverConformance: "a test suite: its options are the test's own",
  storeConformance: "a test suite: its options are the test's own",
  d1CaptureInstalled: "a D1 binding",
  d1CaptureStatus: "a D1 binding",
  installD1Capture: "a D1 binding",
  uninstallD1Capture: "a D1 binding",
};

describe("every public factory refuses an option it does not know", async () => {
  const seen = new Map<string, string>();
  for (const [entry, path] of entries) {
    const module = (await import(/* @vite-ignore */ `../../${path}`)) as Record<string, unknown>;
    for (const [name, value] of Object.entries(module)) {
      if (typeof value === "function" && !seen.has(name)) seen.set(name, entry);
    }
  }
  const exported = [...seen.entries()].sort();

  it("knows each exported function and class", () => {
    const unknown = exported
      .map(([name, entry]) => `${entry}: ${name}`)
      .filter((line) => {
        const name = line.split(": ")[1]!;
        return !(name in CALLS) && !(name in NO_OPTIONS);
      });
    expect(unknown, "add each to CALLS (and check its options) or to NO_OPTIONS").toEqual([]);
  });

  for (const [name, entry] of exported) {
    const call = CALLS[name];
    if (!call) continue;
    it(`${entry}: ${name}({ nonsense: 1 }) is refused, naming the key`, async () => {
      const { [name]: factory } = (await import(
        `../../${entries.find(([e]) => e === entry)![1]}`
      )) as Record<string, never>;
      const error = await (async () => call(factory!))().then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(error).toBeInstanceOf(EdgecacheError);
      expect((error as EdgecacheError).code).toBe("E_BAD_OPTION");
      expect((error as Error).message).toContain('unknown option "nonsense"');
    });
  }
});

describe("a misspelt option", () => {
  it("names the option it most likely meant (issue 43: memoryStore({ maxEntriez: 10 }))", () => {
    expect(() => memoryStore({ maxEntriez: 10 } as never)).toThrow(
      /\[memory\] unknown option "maxEntriez" \(did you mean "maxEntries"\?\)/,
    );
  });

  it("is refused inside nested options, with their path", () => {
    expect(() =>
      createCache({ tiers: [memoryStore()], notFound: { maxEntrys: 5 } } as never),
    ).toThrow(/unknown option "notFound.maxEntrys" \(did you mean "notFound.maxEntries"\?\)/);
  });
});
