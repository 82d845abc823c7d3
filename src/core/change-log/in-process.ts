import { parse, stringify } from "devalue";
import { checkOptionNames, type OptionNames } from "../errors.ts";
import { randomId } from "../random-id.ts";
import {
  type ChangeLog,
  type ChangeRecord,
  changedSince,
  changedTables,
  type LogFollower,
  type LogHistory,
  type LogStart,
  type WriteTurn,
} from "./contract.ts";
import { type OutsideWrites, outsideQuiet } from "./outside-writes.ts";

export interface LocalChangeLogOptions {
  /**
   * Resume the log a previous process left (`snapshot()` at its clean shutdown, with its
   * cache's `history()`), so the entries it stored in a persistent tier can still be
   * checked, by what concerns each of them.
   */
  resume?: LogStart;
  /**
   * Writes other programs make to the source, captured (see core/capture-feed.ts). While `active()`,
   * a load may already show such a write whose record is not applied yet, so the log is
   * `shared` (patches use the strict rules) and a load is exact only when nothing is
   * `pending()` in the change table after it.
   */
  outside?: OutsideWrites;
}

/** Every option of LocalChangeLogOptions: checkOptionNames refuses any other. */
const OPTIONS: OptionNames<LocalChangeLogOptions> = {
  outside: true,
  resume: true,
};

/**
 * The in-process log: today's single-node behaviour. Appends are delivered to every
 * follower synchronously, so several caches in one process (sharing tiers) stay exact.
 * Always trusted: there is no server to lose. Every record is ordered (one process
 * writes, and its data API makes writes take turns from statement to record) unless
 * writes made around edgecache are captured: their records are not, unless they are the
 * only writes and come in commit order (`OutsideWrites.ordered`).
 *
 * @example
 * const log = localChangeLog();
 * const a = createCache({ tiers: [memoryStore(), shared], log });
 * const b = createCache({ tiers: [memoryStore(), shared], log });
 */
export function localChangeLog(options: LocalChangeLogOptions = {}): ChangeLog & {
  snapshot(): LogStart;
} {
  checkOptionNames("local-log", options, OPTIONS);
  const id = options.resume?.position.log || randomId();
  let seq = options.resume?.position.seq ?? 0;
  const followers: LogFollower[] = [];
  const lastChanges = new Map(options.resume?.lastChanges);
  const outside = options.outside;
  return {
    name: "local",
    get shared() {
      return outside?.active() ?? false;
    },
    turn: async () => new LocalTurn(seq),
    // One process: its loads never see its own write before the write's record is applied;
    // a captured one, only once it is no longer pending. Given the tables the load read,
    // only their records and changes count (and every record that names no table).
    async quietSince(position, tables, _cost, patient) {
      if (!outside?.active()) return true;
      // Asked after the load's read: a change it saw is pending still, or applied by now.
      if (!(await outsideQuiet(outside, tables, patient))) return false;
      if (position.log !== id) return false;
      if (!tables) return position.seq === seq;
      return ["", ...tables].every((t) => (lastChanges.get(t) ?? 0) <= position.seq);
    },
    follow(follower) {
      followers.push(follower);
      // The history a previous process left describes the log as resumed: a follower
      // attached after a later record finds it ends short, and judges by lastChanges.
      const history = options.resume?.history;
      follower.reset({ position: { log: id, seq }, lastChanges: new Map(lastChanges), history });
    },
    async append(ops, turn) {
      const tables = changedTables(ops);
      // The data API's writes take turns (statement to record); a captured write's place
      // among them is not known, unless captured writes are all there is (`ordered`). A
      // turn's record is out of order if a record changed one of its tables since the turn
      // was taken (a change recorded around the turn, such as applyWrite or a captured
      // write, or a table its view rows joined: see WriteEvent.views), as on Redis.
      const moved =
        turn instanceof LocalTurn && changedSince(tables, turn.at, (t) => lastChanges.get(t));
      const ordered =
        !moved && (turn !== undefined || !outside?.active() || outside.ordered === true);
      seq++;
      for (const table of tables) lastChanges.set(table, seq);
      const record: ChangeRecord = { seq, ops, ordered };
      for (const f of followers) f.apply(record);
      return seq;
    },
    trusted: () => true,
    failures: 0,
    snapshot: () => ({ position: { log: id, seq }, lastChanges: new Map(lastChanges) }),
    async close() {},
  };
}

/** A write turn of the in-process log: the position it was taken at. */
class LocalTurn implements WriteTurn {
  constructor(readonly at: number) {}
  release(): void {}
}

/**
 * A log's state as text, for a file to keep across a clean restart (see `resume`). devalue,
 * since the history's rows may hold dates or bigints.
 */
export function encodeLogStart(start: LogStart): string {
  const { position, lastChanges, history } = start;
  return stringify({ position, lastChanges: [...lastChanges], history });
}

/** The state `encodeLogStart` wrote; undefined when the text is not one (start a new log). */
export function decodeLogStart(text: string): LogStart | undefined {
  try {
    const saved = parse(text) as {
      position?: { log?: unknown; seq?: unknown };
      lastChanges?: unknown;
      history?: LogHistory;
    };
    const { log, seq } = saved.position ?? {};
    if (typeof log !== "string" || typeof seq !== "number" || !Array.isArray(saved.lastChanges)) {
      return undefined;
    }
    // The fence checks that the history describes this log up to this position.
    return {
      position: { log, seq },
      lastChanges: new Map(saved.lastChanges as [string, number][]),
      history: saved.history,
    };
  } catch {
    return undefined;
  }
}
