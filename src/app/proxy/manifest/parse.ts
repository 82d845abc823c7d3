import { EdgecacheError } from "../../../core/errors.ts";
import { ADMIN_PREFIX, isAdminPath, pathRefusal } from "../../request-target.ts";

export const MANIFEST = "manifest";
/**
 * URLs one manifest may name, after expansion: each is fetched at start and kept fresh, so a
 * pattern that expands to millions is a mistake to report, not a load to start.
 */
export const MAX_MANIFEST_URLS = 10_000;

/**
 * The URLs of a manifest, in order, each once: one path (`/v1/users`) or http(s) URL a
 * line; `#` starts a comment (a fragment is never sent, so no URL needs one) and blank
 * lines are skipped. A line may hold patterns with a finite expansion (see expandLine):
 * `{1..20}` and `{users,orders}`. `source` names the file in errors (`urls.txt:3: ...`).
 *
 * @example
 * parseManifest("# hot pages\n/v1/users?page={1..3}\n", "urls.txt");
 * // ["/v1/users?page=1", "/v1/users?page=2", "/v1/users?page=3"]
 */
export function parseManifest(text: string, source: string): string[] {
  return manifestUrls(text.split(/\r?\n/), source);
}

/** `parseManifest` over lines already split (a config's array); numbered from 1 in errors. */
export function manifestUrls(lines: readonly string[], source: string): string[] {
  const urls = new Set<string>();
  lines.forEach((raw, i) => {
    const line = raw.replace(/#.*$/, "").trim();
    if (line === "") return;
    const at = `${source}:${i + 1}`;
    const room = MAX_MANIFEST_URLS - urls.size;
    for (const url of expandLine(line, at, room)) {
      const problem = targetProblem(url);
      if (problem) throw manifestError(`${at}: ${JSON.stringify(url)}: expected ${problem}`);
      urls.add(url);
    }
  });
  return [...urls];
}

/**
 * What is wrong with a URL the proxy is asked to fetch or purge, by a manifest or the admin
 * API (undefined: nothing): it must be a path or an http(s) URL, that a client's request
 * could name (pathRefusal: no dot segment in any spelling, no backslash; a URL goes to the
 * origin as written), and not an admin path (the proxy's routes would forward it).
 */
export function targetProblem(url: string): string | undefined {
  const base = "http://edgecache.invalid";
  if ((!url.startsWith("/") && !/^https?:\/\//i.test(url)) || !URL.canParse(url, base)) {
    return 'a path starting with "/" or an http(s) URL';
  }
  if (isAdminPath(new URL(url, base).pathname)) {
    return `a URL outside ${ADMIN_PREFIX} (never forwarded)`;
  }
  if (pathRefusal(url)) {
    return "a path a client could send (no dot segment in any spelling, no backslash)";
  }
  return undefined;
}

/**
 * The URLs a line stands for. A group in braces expands to each of its items, and several
 * groups to every combination (in order, the last group varying fastest):
 * - `{a,b,c}`: the alternatives, any text without braces or commas (empty ones too:
 *   `/feed{,.json}`);
 * - `{M..N}`: the integers from M to N inclusive (descending when M > N), zero-padded to
 *   the wider bound when either is written with a leading zero (`{01..12}`).
 * Braces do not nest; a literal brace is written `%7B` / `%7D`. More than `room` URLs is
 * an error that says how many the line would make, counted before any is made.
 */
export function expandLine(line: string, at: string, room = MAX_MANIFEST_URLS): string[] {
  const parts: string[][] = [];
  let rest = line;
  while (rest !== "") {
    const open = rest.indexOf("{");
    const close = rest.indexOf("}");
    if (close >= 0 && (open < 0 || close < open)) {
      throw manifestError(`${at}: "}" without "{" (write %7D for a brace)`);
    }
    if (open < 0) {
      parts.push([rest]);
      break;
    }
    if (close < 0) throw manifestError(`${at}: "{" without "}" (write %7B for a brace)`);
    const group = rest.slice(open + 1, close);
    if (group.includes("{")) throw manifestError(`${at}: braces do not nest`);
    if (open > 0) parts.push([rest.slice(0, open)]);
    parts.push(groupItems(group, at));
    rest = rest.slice(close + 1);
  }
  const count = parts.reduce((n, items) => n * items.length, 1);
  if (count > room) {
    const limit =
      room === MAX_MANIFEST_URLS
        ? `at most ${MAX_MANIFEST_URLS} in a manifest`
        : `${room} more fit in a manifest of at most ${MAX_MANIFEST_URLS}`;
    throw manifestError(`${at}: expands to ${count} URLs; ${limit}`);
  }
  let out = [""];
  for (const items of parts) out = out.flatMap((head) => items.map((item) => head + item));
  return out;
}

/** The items of one `{...}` group: a range or alternatives. */
function groupItems(group: string, at: string): string[] {
  const range = /^(-?\d+)\.\.(-?\d+)$/.exec(group);
  if (range) {
    const [from, to] = [range[1]!, range[2]!];
    const start = Number(from);
    const end = Number(to);
    const size = Math.abs(end - start) + 1;
    // Checked here too: a range alone could be too long to make before the line's count.
    if (!Number.isSafeInteger(start) || !Number.isSafeInteger(end) || size > MAX_MANIFEST_URLS) {
      throw manifestError(
        `${at}: {${group}} expands to ${size} URLs; at most ${MAX_MANIFEST_URLS} in a manifest`,
      );
    }
    const padded = /^-?0\d/.test(from) || /^-?0\d/.test(to);
    const width = padded ? Math.max(from.replace("-", "").length, to.replace("-", "").length) : 0;
    const step = start <= end ? 1 : -1;
    return Array.from({ length: size }, (_, i) => {
      const n = start + i * step;
      const digits = String(Math.abs(n)).padStart(width, "0");
      return n < 0 ? `-${digits}` : digits;
    });
  }
  if (!group.includes(",")) {
    throw manifestError(
      `${at}: {${group}} is neither alternatives ({a,b}) nor a range ({1..9}) (write %7B for a brace)`,
    );
  }
  return group.split(",");
}

function manifestError(message: string): EdgecacheError {
  return new EdgecacheError("E_BAD_OPTION", MANIFEST, message);
}
