import type { ListDependency } from "../../core/deps/planner.ts";
import { rowTag } from "../../core/deps/planner.ts";
import { matches } from "../../core/deps/predicate.ts";
import { selectParts } from "./columns-read.ts";
import {
  columnOf,
  Fallback,
  isNode,
  type Node,
  plain,
  predicate,
  resultColumns,
  type Scope,
  split,
  TRUE,
} from "./predicates.ts";
import { anyWindow, keysIn, reader, twins, valueList, wholeTable } from "./rows.ts";
import {
  MAX_ROW_TAGS,
  NO_LIMIT,
  type ShapeJoin,
  type ShapeLists,
  type TableReason,
} from "./shape-types.ts";

/**
 * How each joined table's writes reach the result, for joins on one key equality between
 * the joined table and one joined before it (its anchor), one side a primary key (what a
 * foreign key references): each anchor row then meets at most one parent row, or a
 * parent's set of children. Declared foreign keys are not needed, nor trusted: a reference
 * may dangle (SQLite does not enforce them by default), and that is allowed for below. A
 * join that is not along a key, or whose links cannot be followed, is registered at table
 * level on its own (`whole`); only an outer join the planner cannot read at all (RIGHT,
 * FULL, CROSS, USING) falls back for the whole select.
 *
 * - Parent (`orders JOIN users ON users.id = orders.user_id`): the result's rows name their
 *   parents by the anchor's column: those parents' row tags. A parent row elsewhere can
 *   change the result only through the parent's conditions, its order under a window, or
 *   (inner join) by completing a dangling reference: then also lists on the parent table
 *   with its conditions and no window (all of it when it has none). Parents of parents
 *   follow the same rule, their anchor's column read from the result.
 * - Children (`users LEFT JOIN orders ON orders.user_id = users.id`), of the base only:
 *   the children of each base row in the result, or looked up, as a list on the foreign
 *   key's value. Exact when every base row whose children could change the result is one
 *   of those: base rows looked up by key only, or a left join whose WHERE does not read
 *   the children, and a window the children cannot shift: from the first row, with no
 *   LIMIT or an order the planner follows ending at the base's key; or, grouped by the
 *   base's key (one result row per base row whatever its children), no LIMIT or an order
 *   the planner follows. Otherwise the child table at table level.
 */
export interface JoinContext {
  select: Node;
  /** The base table's lists (its lookups, disjuncts and window). */
  base: ShapeLists;
  /** The base's scope, then each joined table's, in FROM order. */
  scopes: Scope[];
  /** Which of the scopes' tables the schema knows. */
  known: boolean[];
  /** GROUP BY the base's key: one result row per base row. */
  grouped: boolean;
  /** Whether `expr` may read a column of the table called `names` (subqueries' own tables aside). */
  reads(expr: unknown, names: ReadonlySet<string>): boolean;
  /** The columns of `j` that `parts` may read, or undefined (see `columnsRead`). */
  columnsRead(parts: unknown, j: Scope): string[] | undefined;
}

const JOINS = new Set(["INNER JOIN", "JOIN", "LEFT JOIN", "LEFT OUTER JOIN"]);

/** The joined tables of a select, in FROM order. */
export function joinsOf(ctx: JoinContext): ShapeJoin[] {
  const joins: ShapeJoin[] = [];
  const from = ctx.select.from as Node[];
  for (let i = 1; i < from.length; i++) joins.push(joinOf(ctx, i, from[i]!, joins));
  return joins;
}

function joinOf(ctx: JoinContext, i: number, from: Node, joins: ShapeJoin[]): ShapeJoin {
  const { select, base, scopes } = ctx;
  const b = scopes[0]!;
  const j = scopes[i]!;
  const type = String(from.join ?? "").toUpperCase();
  if (!JOINS.has(type) || from.using || !isNode(from.on)) throw new Fallback("join");
  const inner = !type.startsWith("LEFT");
  const columns = resultColumns(select.columns, j);
  const whereReads = ctx.reads(select.where, j.names);
  const windowed = base.offset > 0 || base.limit < NO_LIMIT;
  // Keys past the base's primary key do not decide the window: an order that reaches it
  // (`ordered`) reads none of the joined tables' columns before it.
  const orderReads = windowed && !base.ordered && ctx.reads(select.orderby, j.names);
  if (whereReads || orderReads) b.widened.add("join");
  const ends = linkOf(from.on, scopes, i);
  const link: ShapeJoin = {
    table: j.table,
    kind: "children",
    column: ends?.joined ?? "",
    from: ends?.anchor ?? "",
    ids: [],
    columns,
    inner,
    ...(whereReads && { filters: true as const }),
  };
  if (j.primaryKey) link.primaryKey = j.primaryKey;
  if (ends && ends.at > 0) link.anchor = ends.at - 1;
  const whole = (why: TableReason = "join"): ShapeJoin => {
    b.widened.add("join");
    return { ...link, ids: [], whole: why };
  };
  if (!ctx.known[i]) return whole("unknown-table");
  // A key the result could hold, had the select named it; an aggregate holds none.
  const unread: TableReason = base.grouping === "aggregate" ? "join" : "key-not-selected";
  // A table joined again: one write would change both sides at once.
  if (!ends || scopes.slice(0, i).some((s) => s.table === j.table)) return whole();
  const anchor = ends.at === 0 ? undefined : joins[ends.at - 1]!;
  // An inner join on an outer-joined anchor drops the anchor's missing rows too: its base
  // rows then leave or enter through the anchor's writes, which its links do not follow.
  if (inner && anchor && !anchor.inner) wholeAnchors(joins, ends.at - 1, b);
  if (ends.joined === j.primaryKey) {
    link.kind = "parent";
    // Grouped, a children's column names one arbitrary child of the group.
    if (ctx.grouped && anchor && anchor.kind !== "parent") return whole();
    // Read by nothing but its key: a parent then changes the result only by coming or
    // going (an inner join's dangling reference completed, a parent deleted), whatever
    // its other columns do, and no key of it need be read from the result.
    const read = ctx.columnsRead(selectParts(select), j);
    if (read?.every((c) => c === j.primaryKey)) return { ...link, existence: true };
    // A NULL-extended row names its (missing) parent only by the anchor's column.
    const anchorColumns = anchor ? anchor.columns : base.columns;
    const readable =
      anchorColumns.includes(ends.anchor) || (inner && columns.includes(j.primaryKey));
    if (!readable) {
      // What decides its rows, for a group patch's update of a parent (see ShapeJoin).
      const ons = (select.from as Node[]).map((f) => f.on);
      const decides = ctx.columnsRead([select.where, ons, select.orderby], j);
      return { ...whole(unread), ...(decides && { decides }) };
    }
    if (!(inner || whereReads || orderReads)) return link;
    // Its rows in the result go by their row tags: the others matter by coming and going
    // and by the columns that decide which rows are in it (its conditions, the joins hung
    // from it, the order under a window), which the reach lists name.
    const ons = (select.from as Node[]).map((f) => f.on);
    const decides = ctx.columnsRead([select.where, ons, orderReads ? select.orderby : null], j);
    if (whereReads || orderReads || !decides) b.widened.add("join");
    const reach = split(select.where ? predicate(select.where, j) : TRUE);
    const deciding = decides?.filter((c) => c !== j.primaryKey);
    // In a left join a missing parent reads as a row of NULLs: deleting one brings its
    // children in under a condition NULL satisfies, which its old row may not.
    if (!inner && reach.disjuncts.some((filters) => matches({}, filters))) {
      const reach = { rowIds: [], disjuncts: [[]], ...(deciding && { columns: deciding }) };
      return { ...link, reach };
    }
    return {
      ...link,
      reach: {
        rowIds: reach.rowIds,
        disjuncts: reach.disjuncts,
        ...(deciding && { columns: deciding }),
      },
    };
  }
  if (ends.at !== 0 || ends.anchor !== b.primaryKey) return whole();
  link.ids = base.rowIds;
  const lookups = base.disjuncts.length === 0;
  const fromFirst = ctx.grouped
    ? !windowed || base.ordered
    : base.offset === 0 &&
      (base.limit === NO_LIMIT || (base.ordered && base.sort.at(-1)?.column === b.primaryKey));
  const exact = lookups || (!inner && !whereReads && fromFirst);
  const readable =
    lookups || base.columns.includes(b.primaryKey) || (inner && columns.includes(link.column));
  if (!exact) return whole();
  return readable ? link : whole(unread);
}

/** The ON clause as one equality of a column of table `i` and one of a table before it. */
function linkOf(
  on: Node,
  scopes: Scope[],
  i: number,
): { at: number; anchor: string; joined: string } | undefined {
  if (on.type !== "binary_expr" || on.operator !== "=") return undefined;
  const owner = (e: unknown) => {
    for (let k = 0; k <= i; k++) {
      const c = columnOf(e, scopes[k]!);
      if (c) return c.collate ? undefined : { at: k, name: c.name };
    }
    return undefined;
  };
  const [l, r] = [owner(on.left), owner(on.right)];
  if (!l || !r) return undefined;
  const [joined, anchor] = l.at === i ? [l, r] : [r, l];
  if (joined.at !== i || anchor.at >= i) return undefined;
  if (!keyEqual(scopes[anchor.at]!, anchor.name, scopes[i]!, joined.name)) return undefined;
  return { at: anchor.at, anchor: anchor.name, joined: joined.name };
}

/**
 * Whether SQL's `=` between two columns compares them as keys are compared here (by value,
 * a text byte for byte): not where their kinds are known to differ (SQLite's affinity then
 * turns `'5.0'` into 5), nor where either compares text otherwise (`collate nocase`, a
 * nondeterministic PostgreSQL collation). What is not known is taken as a key's.
 */
export function keyEqual(a: Scope, column: string, b: Scope, other: string): boolean {
  const [ka, kb] = [a.kinds[column], b.kinds[other]];
  if (ka !== undefined && kb !== undefined && ka !== kb) return false;
  return a.collations?.[column] !== "other" && b.collations?.[other] !== "other";
}

/** Registers the outer-joined anchor `k` (and its outer-joined anchors) at table level. */
function wholeAnchors(joins: ShapeJoin[], k: number, b: Scope): void {
  for (let at: number | undefined = k; at !== undefined; ) {
    const j: ShapeJoin = joins[at]!;
    if (j.inner) return;
    b.widened.add("join");
    joins[at] = { ...j, ids: [], whole: "join" };
    delete joins[at]!.reach;
    at = j.anchor;
  }
}

/**
 * What a joined table's rows reach: a parent's row tag or a list of the children of each
 * key the result (or the query) names, and the `reach` lookups and lists; the whole table
 * when a result row's key cannot be read or there are too many (then it returns false).
 */
export function joinRegistration(
  s: ShapeLists,
  j: ShapeJoin,
  rows: readonly unknown[] | undefined,
  tags: string[],
  lists: ListDependency[],
): boolean {
  let keys: Set<string | number> | undefined = new Set(j.ids.map(plain) as (string | number)[]);
  // Children of looked-up base rows are all named by `ids`: the result adds nothing.
  const fromIds = j.kind === "children" && s.disjuncts.length === 0;
  if (!fromIds) {
    const anchor = j.anchor === undefined ? s.columns : s.joins![j.anchor]!.columns;
    const fromAnchor = reader(anchor, s.names);
    const fromJoined = reader(j.columns, s.names);
    const read = (row: unknown) => {
      const key = fromAnchor(row, j.from);
      return key === undefined && j.inner ? fromJoined(row, j.column) : key;
    };
    keys = j.whole ? undefined : keysIn(rows, read, keys);
  }
  if (j.existence) {
    // Its rows' coming and going: an update that keeps its key is none of the result's.
    lists.push({ ...wholeTable(j.table), columns: [] });
    return true;
  }
  if (!keys || keys.size > MAX_ROW_TAGS) {
    lists.push(wholeTable(j.table));
    return false;
  }
  for (const key of keys) {
    if (j.kind === "parent") tags.push(rowTag(j.table, key));
    else for (const value of twins(key)) lists.push(valueList(j.table, j.column, value));
  }
  if (!j.reach) return true;
  for (const id of j.reach.rowIds) tags.push(rowTag(j.table, id));
  const columns = j.reach.columns;
  for (const filters of j.reach.disjuncts) {
    lists.push({ ...anyWindow(j.table, filters), ...(columns && { columns }) });
  }
  return true;
}
