import { EdgecacheError, type ErrorCode } from "../core/errors.ts";

/**
 * Calls between edgecache's Durable Objects and the isolates that use them: the change log,
 * its followers, learned rules, tenants and the manifest all speak this one protocol (a POST
 * to `/<op>` with a JSON body, answered with JSON). It lives beneath the log and the
 * Cloudflare adapter, which both use it, and names no Cloudflare type: bindings are
 * described structurally.
 */

/** The part of a Durable Object namespace binding edgecache uses (no Cloudflare type). */
export interface DurableObjectNamespaceLike {
  idFromName(name: string): unknown;
  get(
    id: never,
    options?: { locationHint?: string },
  ): { fetch(request: Request): Promise<Response> };
}

/** The part of a Durable Object's `state` edgecache's objects use. */
export interface DurableObjectStateLike {
  storage: {
    get<T>(key: string): Promise<T | undefined>;
    put(entries: Record<string, unknown>): Promise<void>;
    delete(keys: string[]): Promise<number>;
  };
  blockConcurrencyWhile<T>(callback: () => Promise<T>): Promise<T>;
}

/** One object's call to another (`callObject` over the object's own namespace). */
export type ReachObject = (name: string, op: string, body: unknown) => Promise<unknown>;

export interface CallOptions {
  /** Names the caller in errors (`[edgecache] [<component>] ...`). */
  component: string;
  /** The code of the error thrown when the object cannot be reached or fails. */
  unavailable: ErrorCode;
  /** Places a new object near this Cloudflare region (`weur`, `enam`, ...). */
  locationHint?: string;
  /** Rethrow an edgecache JSON error the object answered with its own code. */
  objectErrors?: boolean;
}

/**
 * One call to the object `name` of a Durable Object namespace (from an isolate or another
 * object): `op` with a JSON body, answered with JSON. A call that fails, or an answer that is
 * not OK, throws `unavailable` from `component`, unless the object answered one of
 * edgecache's JSON errors (`{"error": {"code", "message"}}`) and `objectErrors` is set: then
 * that error, with its code.
 *
 * @example
 * const { taken } = await callObject<{ taken: boolean }>(env.CHANGE_LOG, "edgecache", "turn",
 *   { token, ms: 2000 }, { component: "durable-log", unavailable: "E_LOG_UNAVAILABLE" });
 */
export async function callObject<T>(
  namespace: DurableObjectNamespaceLike,
  name: string,
  op: string,
  body: unknown,
  options: CallOptions,
): Promise<T> {
  const { locationHint, component, unavailable } = options;
  let res: Response;
  try {
    // A stub is an I/O object of the request that made it: one per call.
    const id = namespace.idFromName(name) as never;
    const stub = locationHint ? namespace.get(id, { locationHint }) : namespace.get(id);
    res = await stub.fetch(
      new Request(`https://${component}/${op}`, { method: "POST", body: JSON.stringify(body) }),
    );
  } catch (error) {
    throw new EdgecacheError(unavailable, component, `${op} failed`, { cause: error });
  }
  if (!res.ok) {
    const text = await res.text();
    const error = options.objectErrors ? objectError(text) : undefined;
    if (error) throw new EdgecacheError(error.code as ErrorCode, component, error.message);
    throw new EdgecacheError(unavailable, component, `${op}: ${text}`);
  }
  return (await res.json()) as T;
}

/** An edgecache JSON error an object answered (`errorResponse`), if the text is one. */
function objectError(text: string): { code: string; message: string } | undefined {
  try {
    return (JSON.parse(text) as { error?: { code: string; message: string } }).error;
  } catch {
    return undefined;
  }
}
