import type { Cache } from "../../../core/cache/index.ts";
import type { CacheEntry as Entry } from "../../../core/entries/entry.ts";
import { readUpTo } from "../load.ts";
import { baseKey } from "../routes.ts";
import type { Ctx } from "../types.ts";
import type { Copies } from "./conditions.ts";
import { type Write, writeFields } from "./rules.ts";

/**
 * What learning reads of JSON bodies: the fields of a write's answer, and what the cached
 * reads' stored copies hold (see `Copies`), each decoded once while its entry lives.
 */

const UNCOUNTED = { count: false } as const;

/** Largest write answer read for its fields (JSON of one resource is far smaller). */
const MAX_ANSWER_BYTES = 64 * 1024;

/**
 * What rules may bind of a write (see `Write.fields`): the fields of its JSON answer, read
 * here up to a small size (the client gets the same bytes, whether read whole or not), and
 * of `before`, the written resource's copy cached before the write (see `cachedJson`).
 */
export async function writeOf(
  ctx: Ctx,
  response: Response,
  before: unknown,
): Promise<{ write: Write; response: Response }> {
  let answer: unknown;
  const length = Number(response.headers.get("content-length") ?? 0);
  if (
    response.body !== null &&
    length <= MAX_ANSWER_BYTES &&
    isJson(response.headers.get("content-type")) &&
    !response.headers.has("content-encoding")
  ) {
    const read = await readUpTo(response.body, MAX_ANSWER_BYTES);
    const body = "bytes" in read ? read.bytes : read.stream;
    if ("bytes" in read) answer = parseJson(new TextDecoder().decode(read.bytes));
    response = new Response(body, { status: response.status, headers: response.headers });
  }
  const fields = writeFields(answer, before);
  return { write: { method: ctx.method, target: ctx.target, fields }, response };
}

/**
 * What learning looks at in cached reads' stored bodies (JSON up to 64 KiB; each decoded
 * once while its entry lives):
 * - whether one holds a value: as a JSON string (`"7-bch"`) or, for a number, as the value
 *   of a key named `id` or ending in `Id`, `_id` or `ID` (`"userId": 7`);
 * - the rows of a list page: the objects of the body when it is an array, or of its first
 *   property that is one (`{"data": [...]}`).
 */
export function cachedCopies(cache: Cache, ctx: Ctx): Copies {
  // A write asks about its few values for many entries: each value's forms are made once.
  const forms = new Map<string, { quoted: string; underId: RegExp | undefined }>();
  const entryOf = (target: string) => cache.peek(baseKey(target, ctx.host), UNCOUNTED);
  return {
    has: (target) => entryOf(target) !== undefined,
    holds(target, value) {
      const entry = entryOf(target);
      const text = entry && textOf(entry);
      if (!text) return false;
      let form = forms.get(value);
      if (!form) {
        // A number alone says little (`"team":1` is no user 1): only under an id's name.
        const number = /^-?\d+(?:\.\d+)?$/.test(value);
        const underId = number
          ? new RegExp(
              `"(?:id|[A-Za-z0-9_]*(?:Id|_id|ID))"\\s*:\\s*${value.replace(".", "\\.")}(?![\\d.])`,
            )
          : undefined;
        form = { quoted: JSON.stringify(value), underId };
        forms.set(value, form);
      }
      return text.includes(form.quoted) || (form.underId?.test(text) ?? false);
    },
    rows(target) {
      const entry = entryOf(target);
      return entry && rowsOf(entry);
    },
  };
}

type Rows = readonly Readonly<Record<string, unknown>>[];
const ROWS = new WeakMap<Entry, Rows | null>();

function rowsOf(entry: Entry): Rows | undefined {
  let rows = ROWS.get(entry);
  if (rows === undefined) {
    const text = textOf(entry);
    rows = (text !== undefined && listIn(parseJson(text))) || null;
    ROWS.set(entry, rows);
  }
  return rows ?? undefined;
}

/** The rows of a list body: an array of objects, or the first property that is one. */
function listIn(body: unknown): Rows | undefined {
  const isRows = (v: unknown): v is Rows =>
    Array.isArray(v) &&
    v.every((row) => row !== null && typeof row === "object" && !Array.isArray(row));
  if (isRows(body)) return body;
  if (body === null || typeof body !== "object") return undefined;
  return Object.values(body).find(isRows);
}

const TEXTS = new WeakMap<Entry, string>();

function textOf(entry: Entry): string | undefined {
  // A stored piece (a 206) is not the document.
  if (entry.status === 206) return undefined;
  if (entry.headers["content-encoding"] || !isJson(entry.headers["content-type"])) return undefined;
  if (entry.body.byteLength > MAX_ANSWER_BYTES) return undefined;
  let text = TEXTS.get(entry);
  if (text === undefined) {
    text = new TextDecoder().decode(entry.body);
    TEXTS.set(entry, text);
  }
  return text;
}

/** The written resource's cached copy (its own URL's entry), parsed when it is JSON. */
export async function cachedJson(cache: Cache, ctx: Ctx): Promise<unknown> {
  const entry = await cache.getEntry(baseKey(ctx.target, ctx.host), { count: false });
  const text = entry && textOf(entry);
  return text === undefined ? undefined : parseJson(text);
}

function isJson(type: string | null | undefined): boolean {
  return type != null && /[/+]json\b/i.test(type);
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}
