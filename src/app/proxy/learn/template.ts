/**
 * Route templates from concrete request targets: `/api/users/7/profile?team=3` is the
 * template `/api/users/:id/profile?team=*` with the values `["7", "3"]`. Pure and
 * portable (no runtime imports): the learner keys its rules by templates and binds a
 * read's values to a write's by equality.
 *
 * A path segment is a value when it is a number, a UUID, a long hex or base-36 id, or a
 * slug with a digit in it (`post-2024-hello`); other segments (`users`, `profile`) are
 * names, kept as they are. Query parameter values are always values; names are kept and
 * sorted, so `?b=1&a=2` and `?a=2&b=1` share a template.
 */

/** The value shapes recognised in a path (each becomes `:id` in the template). */
export type ValueKind = "id" | "uuid" | "hex" | "slug";

export interface Template {
  /** `/api/users/:id/profile?team=*`: the template's text, the key rules are stored by. */
  template: string;
  /** The concrete values, in template order (path placeholders, then query values). */
  values: readonly string[];
}

const NUMBER = /^-?\d+(?:\.\d+)?$/;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
/** Object ids, hashes: 12 or more hex digits with at least one digit. */
const HEX = /^(?=.*\d)[0-9a-f]{12,}$/i;
/** Random ids (nanoid, cuid, base-36): 16 or more letters and digits, both present. */
const OPAQUE = /^(?=.*\d)(?=.*[a-z])[0-9a-z_-]{16,}$/i;
/** Slugs with a number in them: `post-2024-hello`, `v2-release`. */
const SLUG = /^(?=.*\d)[a-z0-9]+(?:[-_.][a-z0-9]+)+$/i;

/** What kind of value a path segment is, or undefined when it is a name. */
export function valueKind(segment: string): ValueKind | undefined {
  if (segment === "") return undefined;
  if (NUMBER.test(segment)) return "id";
  if (UUID.test(segment)) return "uuid";
  if (HEX.test(segment) || OPAQUE.test(segment)) return "hex";
  if (SLUG.test(segment)) return "slug";
  return undefined;
}

/** Templates made, by target: a write looks at every cached target of its route. */
const MADE = new Map<string, Readonly<Template>>();
/** Targets remembered at most; past it the memory starts again (cached keys are far fewer). */
const MADE_MAX = 100_000;

/**
 * The template of a request target (path and query, as the proxy keys it). The result is
 * shared between calls with the same target: not to be changed.
 *
 * @example
 * templateOf("/api/users/7/profile?team=3")
 * // { template: "/api/users/:id/profile?team=*", values: ["7", "3"] }
 */
export function templateOf(target: string): Readonly<Template> {
  let made = MADE.get(target);
  if (!made) {
    if (MADE.size >= MADE_MAX) MADE.clear();
    made = makeTemplate(target);
    MADE.set(target, made);
  }
  return made;
}

function makeTemplate(target: string): Template {
  const q = target.indexOf("?");
  const path = q < 0 ? target : target.slice(0, q);
  const query = q < 0 ? "" : target.slice(q + 1);
  const values: string[] = [];
  const segments = path.split("/").map((segment) => {
    const kind = valueKind(safeDecode(segment));
    if (kind === undefined) return segment;
    values.push(safeDecode(segment));
    // One placeholder for every kind: a route keeps one template if its ids change shape.
    return ":id";
  });
  let template = segments.join("/");
  if (query !== "") {
    const pairs = query
      .split("&")
      .filter((p) => p !== "")
      .map((p) => {
        const eq = p.indexOf("=");
        return eq < 0
          ? { name: safeDecode(p), value: "" }
          : { name: safeDecode(p.slice(0, eq)), value: safeDecode(p.slice(eq + 1)) };
      })
      .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    if (pairs.length > 0) {
      for (const p of pairs) values.push(p.value);
      template += `?${pairs.map((p) => `${encodeURIComponent(p.name)}=*`).join("&")}`;
    }
  }
  return { template, values };
}

/** Whether a template is one `templateOf` could give (hand-written rules are checked so). */
export function isTemplate(text: string): boolean {
  if (!text.startsWith("/")) return false;
  const q = text.indexOf("?");
  const path = q < 0 ? text : text.slice(0, q);
  for (const segment of path.split("/")) {
    if (segment.startsWith(":") && segment !== ":id") return false;
  }
  if (q < 0) return true;
  return text
    .slice(q + 1)
    .split("&")
    .every((p) => /^[^=&]+=\*$/.test(p));
}

/** How many values a template has (placeholders in the path, then one per query name). */
export function arity(template: string): number {
  const q = template.indexOf("?");
  const path = q < 0 ? template : template.slice(0, q);
  const inPath = path.split("/").filter((s) => s.startsWith(":")).length;
  return inPath + (q < 0 ? 0 : template.slice(q + 1).split("&").length);
}

function safeDecode(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}
