// Bundled by test/log/durable-object.test.ts and run inside workerd: the isolate side of
// the Durable Object change log (`DurableChangeLog`) and its object (`ChangeLogObject`)
// run here, and each call of the conformance suite (in Node) arrives as one request.

import { ChangeLogObject } from "../../src/adapter/cloudflare/change-log-object.ts";
import type {
  ChangeOp,
  ChangeRecord,
  LogPosition,
  WriteTurn,
} from "../../src/core/change-log/contract.ts";
import { randomId } from "../../src/core/random-id.ts";
import type { DurableObjectNamespaceLike } from "../../src/durable/rpc.ts";
import { type ChangeLogMode, DurableChangeLog } from "../../src/log/durable-object.ts";

export { ChangeLogObject };

type Env = { LOG: DurableObjectNamespaceLike };

/** What the log called on a node's follower, in order, as JSON. */
export type Call =
  | { reset: { position: LogPosition; lastChanges: [string, number][] } }
  | { apply: ChangeRecord };

/** The nodes of every test, by id; each keeps every call its follower got. */
const nodes = new Map<string, { log: DurableChangeLog; calls: Call[]; asked(): number }>();
const turns = new Map<string, WriteTurn>();

interface Body {
  id: string;
  /** Calls the caller already has: the reply holds the ones after. */
  since: number;
  name?: string;
  mode?: ChangeLogMode;
  leaseMs?: number;
  ops?: ChangeOp[];
  turn?: string;
  position?: LogPosition;
}

export default {
  async fetch(request: Request, env: Env): Promise<Response> {
    const op = new URL(request.url).pathname.slice(1);
    const body = (await request.json()) as Body;
    try {
      if (op === "open") {
        // Counts the node's syncs that asked the object (lease mode skips most): only
        // those renew its trust, which the suite's side mirrors.
        let asked = 0;
        const namespace: DurableObjectNamespaceLike = {
          idFromName: (name) => env.LOG.idFromName(name),
          get(id) {
            const stub = env.LOG.get(id);
            return {
              fetch(request) {
                if (new URL(request.url).pathname === "/sync") asked++;
                return stub.fetch(request);
              },
            };
          },
        };
        const log = new DurableChangeLog({
          namespace,
          name: body.name!,
          mode: body.mode!,
          leaseMs: body.leaseMs!,
        });
        const calls: Call[] = [];
        log.follow({
          async apply(record) {
            calls.push({ apply: record });
          },
          reset(start) {
            calls.push({
              reset: { position: start.position, lastChanges: [...start.lastChanges] },
            });
          },
        });
        const id = randomId();
        nodes.set(id, { log, calls, asked: () => asked });
        return Response.json({ id });
      }
      const node = nodes.get(body.id);
      if (!node) return new Response(`no node ${body.id}`, { status: 400 });
      const { log } = node;
      let result: Record<string, unknown> = {};
      switch (op) {
        case "sync": {
          const before = node.asked();
          await log.sync();
          result = { asked: node.asked() > before };
          break;
        }
        case "append": {
          const turn = body.turn ? turns.get(body.turn) : undefined;
          turns.delete(body.turn ?? "");
          result = { seq: await log.append(body.ops!, turn) };
          break;
        }
        case "turn": {
          const turn = await log.turn();
          const id = turn ? randomId() : undefined;
          if (turn) turns.set(id!, turn);
          result = { turn: id };
          break;
        }
        case "release":
          turns.get(body.turn!)?.release();
          turns.delete(body.turn!);
          // The release is sent without waiting: give it time to leave before the reply.
          await new Promise((r) => setTimeout(r, 20));
          break;
        case "quiet":
          result = { quiet: await log.quietSince(body.position!) };
          break;
        case "close":
          await log.close();
          break;
        default:
          return new Response(`no op ${op}`, { status: 400 });
      }
      return Response.json({
        ...result,
        calls: node.calls.slice(body.since),
        trusted: log.trusted(),
        failures: log.failures,
      });
    } catch (error) {
      const { code, message } = error as { code?: string; message: string };
      return Response.json({ code, message }, { status: 500 });
    }
  },
};
