/**
 * Key patterns for invalidation: `*` stands for any run of characters (":" included), `?`
 * for one; everything else is literal. `content:*:123:*` matches `content:page:123:en`.
 */
export interface KeyPattern {
  /** The literal part before the first wildcard: every matching key starts with it. */
  prefix: string;
  test(key: string): boolean;
}

export function keyPattern(pattern: string): KeyPattern {
  const wild = pattern.search(/[*?]/);
  const prefix = wild < 0 ? pattern : pattern.slice(0, wild);
  let source = "^";
  for (const ch of pattern) {
    if (ch === "*") source += "[\\s\\S]*";
    else if (ch === "?") source += "[\\s\\S]";
    else source += ch.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&");
  }
  const re = new RegExp(`${source}$`);
  return { prefix, test: (key) => re.test(key) };
}
