import { closest } from "./closest.ts";

/**
 * Every error edgecache raises on purpose is an EdgecacheError with a stable `code`.
 * Messages name the component: `[edgecache] [sqlite] ...`.
 */
export type ErrorCode =
  | "E_BAD_OPTION" // a factory or config option has the wrong type or value
  | "E_BAD_QUERY" // a client's query string or path is malformed
  | "E_BAD_BODY" // a client's request body is malformed
  | "E_BAD_HEADER" // a client's request header is malformed (a Host that is no host)
  | "E_BAD_VALUE" // a value the library cannot cache so that it reads back the same
  | "E_NOT_FOUND" // unknown resource or row
  | "E_METHOD_NOT_ALLOWED" // e.g. a write to a view
  | "E_CONFLICT" // a constraint violation in the source
  | "E_TOO_LARGE" // a request body over the limit
  | "E_STORE_UNAVAILABLE" // a cache tier failed
  | "E_LOG_UNAVAILABLE" // the change log cannot be reached, so a write cannot be acknowledged
  | "E_IN_USE" // a file another process holds (a cache file is one process's)
  | "E_SOURCE_UNAVAILABLE" // the database failed
  | "E_SOURCE_FULL" // the database has no room for a write (a 507, no Retry-After)
  | "E_SOURCE_BUSY" // the database stayed locked by another connection (a 503 with Retry-After)
  | "E_ORIGIN_UNAVAILABLE" // the proxy's origin could not be reached or sent a broken reply
  | "E_UNAUTHORIZED" // no valid credentials (a 401 with WWW-Authenticate)
  | "E_FORBIDDEN" // refused whatever the credentials: another Host or Origin, not loopback
  | "E_UNSUPPORTED_MEDIA_TYPE" // a request body that is not JSON
  | "E_INTERNAL";

export class EdgecacheError extends Error {
  override readonly name = "EdgecacheError";
  readonly code: ErrorCode;

  constructor(code: ErrorCode, component: string, message: string, options?: { cause?: unknown }) {
    super(`[edgecache] [${component}] ${message}`, options);
    this.code = code;
  }
}

/** Longest string an "expected X, got Y" message quotes whole. */
const SHOWN_CHARS = 60;

/**
 * The "Y" of every "expected X, got Y" message: `"x"` (quoted, cut after SHOWN_CHARS), `5`,
 * `true`, `null`, `undefined`, `an array`, `an object`, `a function`. By kind where String
 * would say `[object Object]`, or throw (`{"toString": 1}`), or print a whole structure.
 */
export function describeValue(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "an array";
  switch (typeof value) {
    case "string":
      return JSON.stringify(value.length > SHOWN_CHARS ? `${value.slice(0, SHOWN_CHARS)}…` : value);
    case "number":
    case "boolean":
    case "bigint":
    case "undefined":
      return String(value);
    case "object":
      return "an object";
    default:
      return `a ${typeof value}`;
  }
}

/** An element test for badListOption's commonest list, strings. */
export const isString = (value: unknown): value is string => typeof value === "string";

/**
 * The "Y" of an "expected a list of X" message: the first element `accepts` refuses and
 * where (`1 at tags[0]`), or the value's own description when it is no array (or passes).
 */
export function describeList(
  value: unknown,
  name: string,
  accepts: (element: unknown, index: number) => boolean,
): string {
  if (Array.isArray(value) && value.length === 0) return "an empty array";
  const i = Array.isArray(value) ? value.findIndex((v, at) => !accepts(v, at)) : -1;
  return i < 0
    ? describeValue(value)
    : `${describeValue((value as unknown[])[i])} at ${name}[${i}]`;
}

/** Validates an option in "expected X, got Y" form when a factory is called. */
export function badOption(component: string, name: string, expected: string, got: unknown): never {
  throw badOptionError(component, name, expected, describeValue(got));
}

/** badOption for a list option: names its first wrong element (see describeList). */
export function badListOption(
  component: string,
  name: string,
  expected: string,
  got: unknown,
  accepts: (element: unknown, index: number) => boolean,
): never {
  throw badOptionError(component, name, expected, describeList(got, name, accepts));
}

function badOptionError(component: string, name: string, expected: string, got: string) {
  return new EdgecacheError(
    "E_BAD_OPTION",
    component,
    `option "${name}": expected ${expected}, got ${got}`,
  );
}

/** Every key of every member of a union (`keyof` of a union gives only the shared ones). */
type AllKeys<T> = T extends unknown ? keyof T : never;

/**
 * The names an options type takes, each `true`: the compiler checks the list both ways (a
 * name missing, or one the type does not have, fails to build), so it cannot go stale.
 */
export type OptionNames<T> = { readonly [K in AllKeys<T>]-?: true };

/**
 * Refuses a key of `options` that `names` does not list, naming it and the closest known one:
 * `memoryStore({ maxEntriez: 10 })` would otherwise run unbounded by entries without a word.
 * `at` prefixes nested keys (`"learn."`). Anything but a plain object is left to the
 * factory's own checks.
 *
 * @example
 * const NAMES: OptionNames<MemoryStoreOptions> = { maxBytes: true, maxEntries: true, ... };
 * checkOptionNames("memory", options, NAMES);
 */
export function checkOptionNames<T>(
  component: string,
  options: T | undefined,
  names: OptionNames<T>,
  at = "",
): void {
  if (typeof options !== "object" || options === null || Array.isArray(options)) return;
  for (const key of Object.keys(options)) {
    if (Object.hasOwn(names, key)) continue;
    const known = Object.keys(names);
    const near = closest(key, known);
    throw new EdgecacheError(
      "E_BAD_OPTION",
      component,
      `unknown option "${at}${key}"${near ? ` (did you mean "${at}${near}"?)` : ""}: expected one of ${known.map((k) => at + k).join(", ")}`,
    );
  }
}

/**
 * Validates an environment variable (a Worker's `vars`) in the same form, naming the
 * variable: an operator fixes it where it was set, not in code.
 */
export function badVariable(
  component: string,
  name: string,
  expected: string,
  got: unknown,
): never {
  throw new EdgecacheError(
    "E_BAD_OPTION",
    component,
    `variable ${name}: expected ${expected}, got ${describeValue(got)}`,
  );
}

/**
 * Loads an optional peer dependency: `load` is the `import()` itself, written where it is
 * needed so a bundler sees the literal name. A package that is not installed becomes an
 * E_BAD_OPTION saying what to install, instead of a bare module-not-found.
 *
 * @example
 * const { Redis } = await importPeer(() => import("ioredis"), "redis", "install ioredis to use the Redis store: npm install ioredis");
 */
export async function importPeer<T>(
  load: () => Promise<T>,
  component: string,
  install: string,
): Promise<T> {
  try {
    return await load();
  } catch (error) {
    const code = (error as { code?: unknown } | null)?.code;
    if (code !== "ERR_MODULE_NOT_FOUND" && code !== "MODULE_NOT_FOUND") throw error;
    throw new EdgecacheError("E_BAD_OPTION", component, install, { cause: error });
  }
}
