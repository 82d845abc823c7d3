/**
 * The workload's request sequences: reads drawn by Zipf popularity over the query mix a
 * real API sees, and writes (updates that move rows between filters, inserts, deletes with
 * cascades) at a given ratio. Deterministic: the same data, seed and ratio give the same
 * sequence, which is what lets every strategy run the same requests.
 */
import { mulberry32 } from "../../src/demo/seed.ts";
import type { ListSpec, ReadSpec, Row, Table } from "./oracle.ts";

export interface InitialData {
  users: { id: string; firstName: string; lastName: string }[];
  orders: { id: string; userId: string; status: string }[];
}

export type ReadOp = { kind: "read"; path: string; spec: ReadSpec };
export type WriteOp = {
  kind: "write";
  method: "POST" | "PATCH" | "DELETE";
  path: string;
  table: Table;
  id: string;
  /** POST: the new row; PATCH: the changed columns (the driver adds the next version). */
  body?: Row;
  /** Rows the driver serializes this write with: its own, and the user it belongs to. */
  locks: string[];
  /** A user's delete: the orders the database deletes with it (ON DELETE CASCADE). */
  cascade?: string[];
};
export type Op = ReadOp | WriteOp;

export interface SequenceOptions {
  requests: number;
  /** Share of requests that are writes, 0 to 1. */
  writeRatio: number;
  /**
   * Requests before the `requests`: at this share of writes, until `writes` of them (at
   * least one) are made. They are drawn alike whatever `writeRatio` is, so nodes compared
   * at two shares get the same writes before measuring (bench:writes' measure). Without
   * it the sequence is as before.
   */
  warm?: { writes: number; writeRatio: number };
  /** Zipf exponent of read and write popularity (1.1). */
  zipf?: number;
  seed?: number;
}

const PAGE = 20;
/** Added to the seed of what follows a warm part (see SequenceOptions.warm). */
const WARM_STREAM = 500_000;
const STATUSES = ["pending", "paid", "shipped", "cancelled"];
/** New rows sort after the seeded ones: the demo's dates end at 2026-01-01. */
const NEW_ROWS_FROM = Date.UTC(2026, 0, 1);

/** Samples ranks 0..n-1 with probability proportional to 1 / (rank + 1)^s. */
export class Zipf {
  #cdf: Float64Array;
  constructor(
    n: number,
    s: number,
    readonly random: () => number,
  ) {
    this.#cdf = new Float64Array(n);
    let sum = 0;
    for (let r = 0; r < n; r++) {
      sum += 1 / (r + 1) ** s;
      this.#cdf[r] = sum;
    }
    for (let r = 0; r < n; r++) this.#cdf[r]! /= sum;
  }
  sample(): number {
    const u = this.random();
    let lo = 0;
    let hi = this.#cdf.length - 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.#cdf[mid]! < u) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }
}

/** The read mix: each kind's share of reads, and how it makes a query from a rank. */
interface ReadKind {
  name: string;
  weight: number;
  size: number;
  make(rank: number): ReadOp;
}

/** Builds the request sequence for one write ratio. */
export function generateSequence(data: InitialData, options: SequenceOptions): Op[] {
  const s = options.zipf ?? 1.1;
  // Popularity ranks are the same for every ratio: the hot rows and queries do not move.
  const rankRandom = mulberry32(options.seed ?? 7);
  const users = shuffle(
    data.users.map((u) => u.id),
    rankRandom,
  );
  const orders = shuffle(
    data.orders.map((o) => o.id),
    rankRandom,
  );
  const firstNames = shuffle([...new Set(data.users.map((u) => u.firstName))].sort(), rankRandom);
  const lastNames = [...new Set(data.users.map((u) => u.lastName))].sort();
  const prefixes = shuffle(
    Array.from({ length: 990 }, (_, i) => String(i + 10)),
    rankRandom,
  );

  const { warm } = options;
  if (warm && !(Number.isInteger(warm.writes) && warm.writes > 0 && warm.writeRatio > 0)) {
    throw new Error(
      `[bench] warm: expected a whole number of writes above 0 at a share above 0, got ${JSON.stringify(warm)}`,
    );
  }
  const seeded = (ratio: number, part = 0) =>
    mulberry32((options.seed ?? 7) * 1000 + Math.round(ratio * 1000) + part);
  // One stream for the warm part, drawn by its share alone; the rest's own after it.
  let draw = seeded(warm?.writeRatio ?? options.writeRatio);
  const random = () => draw();
  const kinds = readKinds(users, orders, firstNames, prefixes, data);
  const zipfs = new Map(kinds.map((k) => [k.name, new Zipf(k.size, s, random)]));
  const totalWeight = kinds.reduce((n, k) => n + k.weight, 0);
  const writer = new Writer(
    data,
    users,
    orders,
    firstNames,
    lastNames,
    new Zipf(users.length, s, random),
    new Zipf(orders.length, s, random),
    random,
  );

  const next = (writeRatio: number): Op => {
    if (random() < writeRatio) return writer.next();
    const kind = pickKind(kinds, random() * totalWeight);
    return kind.make(zipfs.get(kind.name)!.sample());
  };
  const ops: Op[] = [];
  if (warm) {
    for (let writes = 0; writes < warm.writes; ) {
      const op = next(warm.writeRatio);
      if (op.kind === "write") writes++;
      ops.push(op);
    }
    // A stream of its own, not the warm part's again should the two shares be the same
    // (nor another share's: a share's seeds step by 1 per thousandth).
    draw = seeded(options.writeRatio, WARM_STREAM);
  }
  for (let i = 0; i < options.requests; i++) ops.push(next(options.writeRatio));
  return ops;
}

function pickKind(kinds: ReadKind[], at: number): ReadKind {
  let left = at;
  for (const kind of kinds) {
    left -= kind.weight;
    if (left < 0) return kind;
  }
  return kinds[kinds.length - 1]!;
}

function readKinds(
  users: string[],
  orders: string[],
  firstNames: string[],
  prefixes: string[],
  data: InitialData,
): ReadKind[] {
  const byId = [{ column: "id", desc: false }];
  const list = (table: Table, rest: Omit<ListSpec, "kind" | "table">): ListSpec => ({
    kind: "list",
    table,
    ...rest,
  });
  const userPages = Math.max(1, Math.min(50, Math.ceil(data.users.length / PAGE)));
  const orderPages = Math.max(1, Math.min(25, Math.ceil(data.orders.length / PAGE / 4)));
  const enc = encodeURIComponent;
  return [
    {
      name: "user item",
      weight: 25,
      size: users.length,
      make: (r) => ({
        kind: "read",
        path: `/v1/users/${enc(users[r]!)}`,
        spec: { kind: "item", table: "users", id: users[r]! },
      }),
    },
    {
      name: "order item",
      weight: 15,
      size: orders.length,
      make: (r) => ({
        kind: "read",
        path: `/v1/orders/${enc(orders[r]!)}`,
        spec: { kind: "item", table: "orders", id: orders[r]! },
      }),
    },
    {
      name: "view item",
      weight: 10,
      size: users.length,
      make: (r) => ({
        kind: "read",
        path: `/v1/usersWithOrders/${enc(users[r]!)}`,
        spec: { kind: "item", table: "users", view: true, id: users[r]! },
      }),
    },
    {
      name: "filtered list",
      weight: 10,
      size: firstNames.length,
      make: (r) => ({
        kind: "read",
        path: `/v1/users?firstName=${enc(firstNames[r]!)}`,
        spec: list("users", {
          filter: { column: "firstName", op: "eq", value: firstNames[r]! },
          sort: byId,
          limit: PAGE,
          offset: 0,
        }),
      }),
    },
    {
      name: "prefix list",
      weight: 10,
      size: prefixes.length,
      make: (r) => ({
        kind: "read",
        path: `/v1/users?id=${prefixes[r]!}*`,
        spec: list("users", {
          filter: { column: "id", op: "prefix", value: prefixes[r]! },
          sort: byId,
          limit: PAGE,
          offset: 0,
        }),
      }),
    },
    {
      // Page 1 is the most read, as on any paginated screen.
      name: "sorted page",
      weight: 10,
      size: userPages,
      make: (r) => ({
        kind: "read",
        path: `/v1/users?sort=lastName&offset=${r * PAGE}`,
        spec: list("users", {
          sort: [
            { column: "lastName", desc: false },
            { column: "id", desc: false },
          ],
          limit: PAGE,
          offset: r * PAGE,
        }),
      }),
    },
    {
      name: "filtered sorted page",
      weight: 10,
      size: orderPages * STATUSES.length,
      make: (r) => {
        const status = STATUSES[r % STATUSES.length]!;
        const page = Math.floor(r / STATUSES.length);
        return {
          kind: "read",
          path: `/v1/orders?status=${status}&sort=-createdAt&offset=${page * PAGE}`,
          spec: list("orders", {
            filter: { column: "status", op: "eq", value: status },
            sort: [
              { column: "createdAt", desc: true },
              { column: "id", desc: false },
            ],
            limit: PAGE,
            offset: page * PAGE,
          }),
        };
      },
    },
    {
      name: "join view list",
      weight: 10,
      size: firstNames.length,
      make: (r) => ({
        kind: "read",
        path: `/v1/usersWithOrders?firstName=${enc(firstNames[r]!)}&limit=10`,
        spec: list("users", {
          view: true,
          filter: { column: "firstName", op: "eq", value: firstNames[r]! },
          sort: byId,
          limit: 10,
          offset: 0,
        }),
      }),
    },
  ];
}

/**
 * Makes writes against a simulation of which rows exist, so that every update and delete
 * names a row that is there when the sequence runs in order. Popular rows are written
 * more often (the same Zipf ranks as reads): the hard case for exact invalidation.
 */
class Writer {
  #aliveUsers: Set<string>;
  #aliveOrders: Set<string>;
  #ordersOf = new Map<string, Set<string>>();
  #userOf = new Map<string, string>();
  #newUsers = 0;
  #newOrders = 0;
  #emails = 0;

  constructor(
    data: InitialData,
    readonly users: string[],
    readonly orders: string[],
    readonly firstNames: string[],
    readonly lastNames: string[],
    readonly userZipf: Zipf,
    readonly orderZipf: Zipf,
    readonly random: () => number,
  ) {
    this.#aliveUsers = new Set(users);
    this.#aliveOrders = new Set(orders);
    for (const o of data.orders) this.#own(o.id, o.userId);
  }

  next(): WriteOp {
    const r = this.random();
    // Updates 65%, inserts 25%, deletes 10%; half of the writes go to each table.
    if (r < 0.35) return this.#updateUser() ?? this.#insertUser();
    if (r < 0.65) return this.#updateOrder() ?? this.#insertOrder();
    if (r < 0.75) return this.#insertUser();
    if (r < 0.9) return this.#insertOrder();
    if (r < 0.97) return this.#deleteOrder() ?? this.#insertOrder();
    return this.#deleteUser() ?? this.#insertUser();
  }

  #updateUser(): WriteOp | undefined {
    const id = this.#pick(this.users, this.userZipf, this.#aliveUsers);
    if (!id) return undefined;
    const r = this.random();
    // lastName moves the row between sorted pages, firstName between filtered lists.
    const body: Row =
      r < 0.4
        ? { lastName: this.#choose(this.lastNames) }
        : r < 0.7
          ? { firstName: this.#choose(this.firstNames) }
          : { email: `bench.${++this.#emails}@example.com` };
    return patch("users", id, body, [`users:${id}`]);
  }

  #updateOrder(): WriteOp | undefined {
    const id = this.#pick(this.orders, this.orderZipf, this.#aliveOrders);
    if (!id) return undefined;
    // A status change moves the order between the status lists.
    const body: Row =
      this.random() < 0.6
        ? { status: this.#choose(STATUSES) }
        : { total: Math.round(this.random() * 50_000) / 100 };
    return patch("orders", id, body, [`orders:${id}`, `users:${this.#userOf.get(id)}`]);
  }

  #insertUser(): WriteOp {
    const n = ++this.#newUsers;
    const id = `${this.users.length + n}-bch`;
    this.#aliveUsers.add(id);
    const body: Row = {
      id,
      firstName: this.#choose(this.firstNames),
      lastName: this.#choose(this.lastNames),
      email: `new.${n}@example.com`,
      createdAt: isoSeconds(NEW_ROWS_FROM + n * 1000),
      version: 1,
    };
    return {
      kind: "write",
      method: "POST",
      path: "/v1/users",
      table: "users",
      id,
      body,
      locks: [`users:${id}`],
    };
  }

  #insertOrder(): WriteOp {
    const userId =
      this.#pick(this.users, this.userZipf, this.#aliveUsers) ?? [...this.#aliveUsers][0]!;
    const n = ++this.#newOrders;
    const id = `o-b${String(n).padStart(6, "0")}`;
    this.#aliveOrders.add(id);
    this.#own(id, userId);
    const body: Row = {
      id,
      userId,
      total: Math.round(this.random() * 50_000) / 100,
      status: this.#choose(STATUSES),
      // Newest first in `sort=-createdAt`: every insert reaches the first page.
      createdAt: isoSeconds(NEW_ROWS_FROM + n * 1000),
      version: 1,
    };
    return {
      kind: "write",
      method: "POST",
      path: "/v1/orders",
      table: "orders",
      id,
      body,
      locks: [`orders:${id}`, `users:${userId}`],
    };
  }

  #deleteOrder(): WriteOp | undefined {
    const id = this.#pick(this.orders, this.orderZipf, this.#aliveOrders);
    if (!id) return undefined;
    const userId = this.#userOf.get(id)!;
    this.#aliveOrders.delete(id);
    this.#ordersOf.get(userId)?.delete(id);
    return del("orders", id, [`orders:${id}`, `users:${userId}`]);
  }

  /** Deleting a user deletes their orders too (ON DELETE CASCADE). */
  #deleteUser(): WriteOp | undefined {
    const id = this.#pick(this.users, this.userZipf, this.#aliveUsers);
    if (!id) return undefined;
    this.#aliveUsers.delete(id);
    const cascade = [...(this.#ordersOf.get(id) ?? [])];
    for (const o of cascade) this.#aliveOrders.delete(o);
    this.#ordersOf.delete(id);
    return { ...del("users", id, [`users:${id}`]), cascade };
  }

  #pick(ranked: string[], zipf: Zipf, alive: Set<string>): string | undefined {
    for (let tries = 0; tries < 20; tries++) {
      const id = ranked[zipf.sample()]!;
      if (alive.has(id)) return id;
    }
    return undefined;
  }

  #own(orderId: string, userId: string): void {
    this.#userOf.set(orderId, userId);
    const set = this.#ordersOf.get(userId);
    if (set) set.add(orderId);
    else this.#ordersOf.set(userId, new Set([orderId]));
  }

  #choose<T>(list: readonly T[]): T {
    return list[Math.floor(this.random() * list.length)]!;
  }
}

function patch(table: Table, id: string, body: Row, locks: string[]): WriteOp {
  return {
    kind: "write",
    method: "PATCH",
    path: `/v1/${table}/${encodeURIComponent(id)}`,
    table,
    id,
    body,
    locks,
  };
}

function del(table: Table, id: string, locks: string[]): WriteOp {
  return {
    kind: "write",
    method: "DELETE",
    path: `/v1/${table}/${encodeURIComponent(id)}`,
    table,
    id,
    locks,
  };
}

function shuffle<T>(list: T[], random: () => number): T[] {
  for (let i = list.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [list[i], list[j]] = [list[j]!, list[i]!];
  }
  return list;
}

function isoSeconds(ms: number): string {
  return new Date(ms).toISOString().replace(".000Z", "Z");
}
