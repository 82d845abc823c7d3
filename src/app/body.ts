import type { Context } from "hono";
import { closest } from "../core/closest.ts";
import { describeList, describeValue, EdgecacheError, isString } from "../core/errors.ts";

/**
 * Request bodies: one reader for every JSON body the APIs take (the data API's rows, the
 * admin and tenants APIs' requests), and one validator for the admin bodies, each route's
 * schema declared as data. Whatever a client sends is a 400 `E_BAD_BODY` or passes as the
 * schema's type: no body reaches a route as a value it did not check (`{"toString": 1}`
 * where a string was expected, an array 50,000 deep).
 */

/**
 * Brackets open at once in a body at most. JSON.parse takes any depth, but what walks the
 * value after it (JSON.stringify, a deep copy) recurses and overflows the stack: a
 * RangeError, a 500. Rows and admin requests nest a few levels.
 */
export const MAX_JSON_DEPTH = 64;

/** `text` nests arrays and objects deeper than `max` (strings skipped, escapes included). */
function nestsDeeper(text: string, max: number): boolean {
  let depth = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x22 /* " */) {
      for (i++; i < text.length; i++) {
        const s = text.charCodeAt(i);
        if (s === 0x5c /* \ */) i++;
        else if (s === 0x22) break;
      }
    } else if (c === 0x5b /* [ */ || c === 0x7b /* { */) {
      if (++depth > max) return true;
    } else if (c === 0x5d /* ] */ || c === 0x7d /* } */) {
      depth--;
    }
  }
  return false;
}

/**
 * The request's body as JSON: a body that cannot be read, does not parse or nests deeper
 * than MAX_JSON_DEPTH is a 400 `E_BAD_BODY` (never a SyntaxError or RangeError, a 500).
 */
export async function readJson(
  req: { text(): Promise<string> },
  component: string,
  expected = "a JSON object",
): Promise<unknown> {
  const bad = (why: string, cause?: unknown) =>
    new EdgecacheError("E_BAD_BODY", component, `body: expected ${expected}${why}`, { cause });
  let text: string;
  try {
    text = await req.text();
  } catch (error) {
    throw bad("", error);
  }
  if (nestsDeeper(text, MAX_JSON_DEPTH)) throw bad(`, nested at most ${MAX_JSON_DEPTH} deep`);
  try {
    return JSON.parse(text);
  } catch (error) {
    throw bad("", error);
  }
}

/** Whether `value` is a JSON object (not null, not an array). */
export function isJsonObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** One field of a body: what it expects, in "expected X" words, and the test. */
export interface Field<T> {
  expected: string;
  accepts(value: unknown): value is T;
  /** For a list: what each element must be, so that a message names the wrong one. */
  element?: (value: unknown) => boolean;
  /** Must be present (otherwise a field may be left out). */
  required?: true;
}

/** A body's fields by name. */
export type Schema = Readonly<Record<string, Field<unknown>>>;

type Value<F> = F extends Field<infer T> ? T : never;

/** The body a schema lets through: its required fields, and its others when sent. */
export type BodyOf<S extends Schema> = {
  [K in keyof S as S[K] extends { required: true } ? K : never]: Value<S[K]>;
} & {
  [K in keyof S as S[K] extends { required: true } ? never : K]?: Value<S[K]>;
};

const field = <T>(expected: string, accepts: (v: unknown) => boolean): Field<T> => ({
  expected,
  accepts: accepts as (v: unknown) => v is T,
});

/** The fields bodies are made of. */
export const fields = {
  string: field<string>("a string", (v) => typeof v === "string"),
  nonEmptyString: field<string>("a non-empty string", (v) => typeof v === "string" && v !== ""),
  strings: {
    ...field<string[]>("an array of strings", (v) => Array.isArray(v) && v.every(isString)),
    element: isString,
  },
  boolean: field<boolean>("true or false", (v) => typeof v === "boolean"),
  wholeNumber: field<number>(
    "a whole number >= 1",
    (v) => typeof v === "number" && Number.isInteger(v) && v >= 1,
  ),
  oneOf: <const T extends string>(values: readonly T[]): Field<T> =>
    field<T>(
      `one of ${values.join(", ")}`,
      (v) => typeof v === "string" && (values as readonly string[]).includes(v),
    ),
  /** A nested object whose fields `schema` checks (no others), shown as `shape`. */
  object: <S extends Schema>(schema: S, shape: string): Field<BodyOf<S>> =>
    field<BodyOf<S>>(shape, (v) => problem(schema, v) === undefined),
  required: <T>(f: Field<T>): Field<T> & { required: true } => ({ ...f, required: true }),
} as const;

/** What is wrong with `value` under `schema` ("name: expected X, got Y"), or undefined. */
function problem(schema: Schema, value: unknown, at = ""): string | undefined {
  if (!isJsonObject(value))
    return `${at || "body"}: expected an object, got ${describeValue(value)}`;
  for (const key of Object.keys(value)) {
    if (Object.hasOwn(schema, key)) continue;
    const known = Object.keys(schema);
    const near = closest(key, known);
    return `unknown field "${at}${key}"${near ? ` (did you mean "${at}${near}"?)` : ""}: expected one of ${known.map((k) => at + k).join(", ")}`;
  }
  for (const [name, f] of Object.entries(schema)) {
    const v = value[name];
    if (v === undefined) {
      if (f.required) return `${at}${name}: expected ${f.expected}, got nothing`;
      continue;
    }
    if (!f.accepts(v)) {
      const got = f.element ? describeList(v, at + name, f.element) : describeValue(v);
      return `${at}${name}: expected ${f.expected}, got ${got}`;
    }
  }
  return undefined;
}

/**
 * `value` as the body `schema` describes, or a 400 `E_BAD_BODY` naming the first field that
 * is not (an unknown field too: a misspelt one would otherwise be ignored without a word).
 */
export function checkBody<S extends Schema>(
  schema: S,
  value: unknown,
  component: string,
  example: string,
): BodyOf<S> {
  if (!isJsonObject(value)) {
    throw new EdgecacheError(
      "E_BAD_BODY",
      component,
      `body: expected a JSON object such as ${example}, got ${describeValue(value)}`,
    );
  }
  const wrong = problem(schema, value);
  if (wrong !== undefined) throw new EdgecacheError("E_BAD_BODY", component, wrong);
  return value as BodyOf<S>;
}

/** A request's JSON body, read by readJson and checked against `schema` (see checkBody). */
export async function readBody<S extends Schema>(
  c: Context,
  schema: S,
  component: string,
  example: string,
): Promise<BodyOf<S>> {
  const value = await readJson(c.req, component, `a JSON object such as ${example}`);
  return checkBody(schema, value, component, example);
}

/** A 400 `E_BAD_BODY` for a field that passed its schema but not a route's own rule. */
export function bodyError(
  component: string,
  name: string,
  expected: string,
  got: unknown,
): EdgecacheError {
  return new EdgecacheError(
    "E_BAD_BODY",
    component,
    `${name}: expected ${expected}, got ${describeValue(got)}`,
  );
}
