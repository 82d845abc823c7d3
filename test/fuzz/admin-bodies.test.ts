import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ADMIN_FIELDS } from "./http-fuzz.ts";
import { startMode } from "./modes.ts";
import type { VariantTarget } from "./variants.ts";

/**
 * Generated JSON bodies for the admin API's POST routes (issue 70, defect 6's class): every
 * shape, type and depth is answered 2xx, or 4xx with a JSON error `{ error: { code,
 * message } }`; never 5xx, never a stack. FUZZ_RUNS raises the count, FUZZ_SEED replays.
 */
const RUNS = Math.ceil(Number(process.env.FUZZ_RUNS ?? 80) / 2);
const SEED = Number(process.env.FUZZ_SEED ?? 20_261_125);
const TOKEN = "fuzz-admin-token";

const FIELDS = ADMIN_FIELDS;

/** Values of every JSON type, and objects that look like what JS coerces (toString...). */
function values(): fc.Arbitrary<unknown> {
  const leaf = fc.oneof(
    fc.string({ maxLength: 12 }),
    fc.constantFrom("", "/", "/page/a", "users", "GET /v1/users", "pinned", "\u00e9", "%"),
    fc.integer(),
    fc.double(),
    fc.boolean(),
    fc.constant(null),
  );
  const coercing = fc
    .tuple(
      fc.constantFrom("toString", "valueOf", "__proto__", "constructor", "then", "length", "0"),
      leaf,
    )
    .map(([k, v]) => JSON.parse(`{${JSON.stringify(k)}:${JSON.stringify(v)}}`));
  const { tree } = fc.letrec((tie) => ({
    tree: fc.oneof(
      { depthSize: "small", withCrossShrink: true },
      leaf,
      coercing,
      fc.array(tie("tree"), { maxLength: 3 }),
      fc.dictionary(fc.constantFrom(...FIELDS, "table", "id"), tie("tree"), { maxKeys: 3 }),
    ),
  }));
  return tree;
}

/** A body's text: an object of the routes' fields, deep nesting, or not an object at all. */
function bodies(): fc.Arbitrary<string> {
  const object = fc
    .dictionary(fc.constantFrom(...FIELDS), values(), { minKeys: 1, maxKeys: 3 })
    .map((o) => JSON.stringify(o));
  // Nesting written as text: JSON.stringify of a 50,000-deep array would overflow here.
  const deep = fc
    .tuple(fc.constantFrom(...FIELDS), fc.integer({ min: 100, max: 60_000 }), fc.boolean())
    .map(([k, n, objects]) =>
      objects
        ? `{"${k}":${'{"a":'.repeat(n)}1${"}".repeat(n)}}`
        : `{"${k}":${"[".repeat(n)}${"]".repeat(n)}}`,
    );
  const other = fc.oneof(
    fc.json({ maxDepth: 2 }),
    fc.constantFrom("", "{", "null", "[]", '"x"', "1e999", '{"__proto__":{"key":"x"}}'),
  );
  return fc.oneof({ weight: 6, arbitrary: object }, { weight: 2, arbitrary: deep }, other);
}

async function check(
  target: VariantTarget,
  path: string,
  body: string,
  token?: string,
): Promise<void> {
  const res = await fetch(`http://127.0.0.1:${target.port}${path}`, {
    method: "POST",
    headers: {
      "content-type": "application/json",
      ...(token && { authorization: `Bearer ${token}` }),
    },
    body,
  });
  const text = await res.text();
  const what = `POST ${path} ${body.length > 300 ? `${body.slice(0, 300)}... (${body.length} bytes)` : body}: ${res.status} ${text.slice(0, 300)}`;
  if (res.status >= 500) throw new Error(`5xx: ${what}`);
  if (/\n\s+at |Error:|TypeError|RangeError/.test(text)) throw new Error(`a stack: ${what}`);
  if (res.status >= 400) {
    const json = (() => {
      try {
        return JSON.parse(text);
      } catch {
        return undefined;
      }
    })();
    if (typeof json?.error?.code !== "string" || typeof json.error.message !== "string") {
      throw new Error(`not a JSON error: ${what}`);
    }
  }
}

describe("fuzzed admin bodies: answered 2xx or a 4xx JSON error, never a 5xx or a stack", () => {
  let data: VariantTarget;
  let proxy: VariantTarget;
  beforeAll(async () => {
    [data, proxy] = await Promise.all([startMode("admin-token"), startMode("proxy")]);
  });
  afterAll(async () => {
    await Promise.all([data?.close(), proxy?.close()]);
  });

  it("the data API's /_edgecache/invalidate", async () => {
    await fc.assert(
      fc.asyncProperty(bodies(), (b) => check(data, "/_edgecache/invalidate", b, TOKEN)),
      { numRuns: RUNS, seed: SEED },
    );
    expect(RUNS).toBeGreaterThan(0);
  }, 120_000);

  it.each(["/_edgecache/purge", "/_edgecache/invalidate", "/_edgecache/warm"])(
    "the proxy's %s",
    async (path) => {
      await fc.assert(
        fc.asyncProperty(bodies(), (b) => check(proxy, path, b)),
        { numRuns: RUNS, seed: SEED },
      );
      expect(RUNS).toBeGreaterThan(0);
    },
    120_000,
  );
});
