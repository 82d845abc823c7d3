/**
 * Encodes a driver's raw result as JSON text and back, keeping what plain JSON loses:
 * `undefined`, NaN and the infinities, -0, bigints (libSQL in `intMode: "bigint"`), Dates,
 * bytes (libSQL's ArrayBuffer, node-postgres' Buffer, Uint8Array), and objects whose
 * properties are not all plain (a libSQL row is a null-prototype object whose column
 * indexes and `length` are non-enumerable: plain JSON keeps only the names, and Drizzle,
 * which reads rows by index, then finds them empty).
 *
 * Pure: no I/O. A value it cannot restore exactly (a class instance, a Map, an accessor)
 * throws `Uncacheable`, and the caller leaves that result out of the cache. The one
 * exception is the result object itself (node-postgres' `Result`): it comes back as a
 * plain object with its data properties (`rows`, `rowCount`, `command`, `fields`...).
 */

/** A value that could not be encoded so that it decodes to the same thing. */
export class Uncacheable extends Error {
  override readonly name = "Uncacheable";
}

/** The marker key of tagged values. A plain object that has it is itself wrapped. */
const TAG = "$";
const ENUMERABLE = 1;
const WRITABLE = 2;
const CONFIGURABLE = 4;
const PLAIN = ENUMERABLE | WRITABLE | CONFIGURABLE;
const PLAIN_DESCRIPTOR = { enumerable: true, writable: true, configurable: true };

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

export function encode(value: unknown): string {
  try {
    return JSON.stringify(isEnvelope(value) ? envelopeToJson(value) : toJson(value));
  } catch (err) {
    if (err instanceof Uncacheable) throw err;
    // A cycle overflows the stack; anything else unexpected is just as uncacheable.
    throw new Uncacheable(`cannot encode the result: ${String(err)}`, { cause: err });
  }
}

export function decode(text: string): unknown {
  return fromJson(JSON.parse(text) as Json);
}

function toJson(value: unknown): Json {
  switch (typeof value) {
    case "string":
    case "boolean":
      return value;
    case "number":
      return Number.isFinite(value) && !Object.is(value, -0)
        ? value
        : { [TAG]: "n", v: Object.is(value, -0) ? "-0" : String(value) };
    case "undefined":
      return { [TAG]: "u" };
    case "bigint":
      return { [TAG]: "b", v: value.toString() };
    case "object":
      return value === null ? null : objectToJson(value);
    default:
      throw new Uncacheable(`a ${typeof value} cannot be cached`);
  }
}

function objectToJson(value: object): Json {
  if (value instanceof Date) return { [TAG]: "d", v: toJson(value.getTime()) };
  const nodeBuffer = (globalThis as { Buffer?: { isBuffer(v: unknown): boolean } }).Buffer;
  if (nodeBuffer?.isBuffer(value)) return { [TAG]: "B", v: toBase64(value as Uint8Array) };
  if (value instanceof Uint8Array && value.constructor === Uint8Array) {
    return { [TAG]: "U8", v: toBase64(value) };
  }
  if (value instanceof ArrayBuffer) return { [TAG]: "AB", v: toBase64(new Uint8Array(value)) };
  if (Array.isArray(value)) return arrayToJson(value);
  const proto = Object.getPrototypeOf(value);
  if (proto !== Object.prototype && proto !== null) {
    throw new Uncacheable(`a ${proto?.constructor?.name ?? "class"} instance cannot be cached`);
  }
  if (Object.getOwnPropertySymbols(value).length > 0) {
    throw new Uncacheable("an object with symbol keys cannot be cached");
  }
  const names = Object.getOwnPropertyNames(value);
  const descriptors = names.map((n) => Object.getOwnPropertyDescriptor(value, n)!);
  if (proto === Object.prototype && descriptors.every((d) => flagsOf(d) === PLAIN)) {
    const out: { [key: string]: Json } = {};
    for (let i = 0; i < names.length; i++) {
      Object.defineProperty(out, names[i]!, {
        value: toJson(descriptors[i]!.value),
        ...PLAIN_DESCRIPTOR,
      });
    }
    return TAG in out ? { [TAG]: "o", v: out } : out;
  }
  // Anything else keeps each property's flags, in order (a libSQL row).
  return {
    [TAG]: "O",
    n: proto === null,
    p: names.map((name, i) => [name, flagsOf(descriptors[i]!), toJson(descriptors[i]!.value)]),
  };
}

/** A driver's result object of its own class at the top (node-postgres' `Result`). */
function isEnvelope(value: unknown): value is object {
  if (typeof value !== "object" || value === null || Array.isArray(value)) return false;
  const proto = Object.getPrototypeOf(value);
  return (
    proto !== Object.prototype &&
    proto !== null &&
    !(value instanceof Date) &&
    !(value instanceof Uint8Array) &&
    !(value instanceof ArrayBuffer)
  );
}

/**
 * The result object comes back as a plain object with its own data properties; what cannot
 * be restored beside the rows (a driver's parser functions, its class) is left out. Its
 * `rows`, what Drizzle reads, are encoded as strictly as anything else.
 */
function envelopeToJson(value: object): Json {
  const props: { [key: string]: Json } = {};
  for (const [k, v] of Object.entries(value)) {
    if (k === "rows") {
      props[k] = toJson(v);
      continue;
    }
    try {
      props[k] = toJson(v);
    } catch (err) {
      if (!(err instanceof Uncacheable)) throw err;
    }
  }
  return { [TAG]: "E", p: props };
}

function arrayToJson(value: unknown[]): Json {
  const items: Json[] = [];
  for (let i = 0; i < value.length; i++) items.push(toJson(value[i]));
  // Own properties beyond the indexes (postgres.js puts `count`, `command`... on a result).
  const extra = Object.keys(value).filter((k) => !isIndex(k));
  if (extra.length === 0 && Object.getPrototypeOf(value) === Array.prototype) return items;
  const props: { [key: string]: Json } = {};
  for (const k of extra) props[k] = toJson((value as unknown as Record<string, unknown>)[k]);
  return { [TAG]: "A", v: items, p: props };
}

function fromJson(json: Json): unknown {
  if (json === null || typeof json !== "object") return json;
  if (Array.isArray(json)) return json.map(fromJson);
  const tag = json[TAG];
  if (tag === undefined) return plainFromJson(json);
  switch (tag) {
    case "n":
      return json.v === "-0" ? -0 : Number(json.v);
    case "u":
      return undefined;
    case "b":
      return BigInt(json.v as string);
    case "d":
      return new Date(fromJson(json.v!) as number);
    case "B": {
      const bytes = fromBase64(json.v as string);
      const nodeBuffer = (globalThis as { Buffer?: { from(b: Uint8Array): Uint8Array } }).Buffer;
      return nodeBuffer ? nodeBuffer.from(bytes) : bytes;
    }
    case "U8":
      return fromBase64(json.v as string);
    case "AB":
      return fromBase64(json.v as string).buffer;
    case "o":
      return plainFromJson(json.v as { [key: string]: Json });
    case "A": {
      const out = (json.v as Json[]).map(fromJson);
      for (const [k, v] of Object.entries(json.p as Record<string, Json>)) {
        (out as unknown as Record<string, unknown>)[k] = fromJson(v);
      }
      return out;
    }
    case "E":
      return plainFromJson(json.p as { [key: string]: Json });
    case "O": {
      const out = json.n ? Object.create(null) : {};
      for (const [name, flags, v] of json.p as [string, number, Json][]) {
        Object.defineProperty(out, name, {
          value: fromJson(v),
          enumerable: (flags & ENUMERABLE) !== 0,
          writable: (flags & WRITABLE) !== 0,
          configurable: (flags & CONFIGURABLE) !== 0,
        });
      }
      return out;
    }
    default:
      throw new Error(`unknown tag ${JSON.stringify(tag)} in a cached result`);
  }
}

function plainFromJson(json: { [key: string]: Json }): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(json)) {
    // Assigning "__proto__" would set the prototype instead of a property (a column may be so named).
    if (k === "__proto__") {
      Object.defineProperty(out, k, { value: fromJson(v), ...PLAIN_DESCRIPTOR });
    } else out[k] = fromJson(v);
  }
  return out;
}

function flagsOf(d: PropertyDescriptor): number {
  if (d.get || d.set) throw new Uncacheable("an object with accessors cannot be cached");
  return (
    (d.enumerable ? ENUMERABLE : 0) |
    (d.writable ? WRITABLE : 0) |
    (d.configurable ? CONFIGURABLE : 0)
  );
}

function isIndex(key: string): boolean {
  return /^(0|[1-9]\d*)$/.test(key);
}

/** Base64 without Buffer, so the adapter runs on Workers too. */
function toBase64(bytes: Uint8Array): string {
  let binary = "";
  const CHUNK = 0x8000;
  for (let i = 0; i < bytes.length; i += CHUNK) {
    binary += String.fromCharCode(...bytes.subarray(i, i + CHUNK));
  }
  return btoa(binary);
}

function fromBase64(text: string): Uint8Array {
  const binary = atob(text);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}
