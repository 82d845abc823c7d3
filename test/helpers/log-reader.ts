import type { Redis } from "ioredis";

/**
 * What a test does around the stream reads of a Redis change log's reader (a connection the
 * log duplicates from the client it is given): `before` each read is sent (to hold it back),
 * `reply` to change what it brought, `renewed` when a renewal goes with a read. A read goes
 * alone (`xread`) or behind the node's renewal in one pipeline (follower.ts, `#readStream`):
 * both are wrapped. A lone node's wait on its bell (BLPOP) is not a read: the read it makes
 * when rung is.
 */
export interface ReadHooks {
  before?(): Promise<void>;
  /** Once the read sent after `before` has returned (or failed). */
  after?(): void;
  reply?(reply: unknown): unknown;
  renewed?(): void;
}

type Calls = Record<string, (...a: unknown[]) => unknown>;

/** Hooks the reads of the log made on `client` (see ReadHooks). */
export function hookReads(client: Redis, hooks: ReadHooks): void {
  const duplicate = client.duplicate.bind(client);
  (client as { duplicate: typeof client.duplicate }).duplicate = (...args) => {
    const copy = duplicate(...args);
    const calls = copy as unknown as Calls;
    const xread = calls.xread!.bind(copy);
    calls.xread = async (...a: unknown[]) => {
      await hooks.before?.();
      let reply: unknown;
      try {
        reply = await xread(...a);
      } finally {
        hooks.after?.();
      }
      return hooks.reply ? hooks.reply(reply) : reply;
    };
    const pipeline = copy.pipeline.bind(copy);
    (copy as { pipeline: typeof copy.pipeline }).pipeline = (...a) => {
      const p = pipeline(...a);
      const queued = p as unknown as Calls;
      // The only script the reader sends: the renewal (by its SHA1).
      const evalsha = queued.evalsha!.bind(p);
      queued.evalsha = (...b: unknown[]) => {
        hooks.renewed?.();
        return evalsha(...b);
      };
      const exec = p.exec.bind(p);
      (p as { exec: typeof p.exec }).exec = async (...b) => {
        await hooks.before?.();
        let results: Awaited<ReturnType<typeof exec>>;
        try {
          results = await exec(...b);
        } finally {
          hooks.after?.();
        }
        const last = results?.[results.length - 1];
        if (hooks.reply && last && !last[0]) last[1] = hooks.reply(last[1]);
        return results;
      };
      return p;
    };
    return copy;
  };
}
