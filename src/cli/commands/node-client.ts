import { envVar } from "../environment.ts";
import { CliFailure, EXIT } from "../run.ts";

/** The node the commands talk to when neither --url nor EDGECACHE_URL names one. */
export const DEFAULT_URL = "http://127.0.0.1:8787";
/** How long one request to the node may take before the command gives up. */
const TIMEOUT_MS = 30_000;

/** Flags of every command that talks to a running node. */
export const NODE_ARGS = {
  url: {
    type: "string",
    description: `The node, e.g. http://127.0.0.1:8787 (default: EDGECACHE_URL, else ${DEFAULT_URL})`,
    valueHint: "url",
  },
  token: {
    type: "string",
    description:
      "Admin token of a node started with EDGECACHE_ADMIN_TOKEN (default: EDGECACHE_ADMIN_TOKEN; the variable keeps it out of `ps`)",
    valueHint: "token",
  },
} as const;

export const JSON_ARG = {
  json: { type: "boolean", description: "Print the node's answer as JSON, for scripts" },
} as const;

export interface NodeClient {
  /** The node's base URL, without a trailing slash. */
  url: string;
  /** Sends a request to the admin API (`path` below /_edgecache) and returns its JSON. */
  admin<T = unknown>(method: "GET" | "POST" | "DELETE", path: string, body?: unknown): Promise<T>;
  /**
   * Sends `GET url` (a path of the node, or an absolute URL) and returns the response, with
   * `key` (a tenant's API key) in X-Edgecache-Key. The admin token is never sent with it.
   */
  get(target: string, key?: string): Promise<Response>;
}

/** A client for the node the flags or the environment name. */
export function nodeClient(args: { url?: string; token?: string }): NodeClient {
  const base = nodeUrl(args.url || envVar("EDGECACHE_URL") || DEFAULT_URL);
  const token = args.token || envVar("EDGECACHE_ADMIN_TOKEN") || undefined;
  const send = async (url: string, init: RequestInit): Promise<Response> => {
    try {
      return await fetch(url, { ...init, signal: AbortSignal.timeout(TIMEOUT_MS) });
    } catch (err) {
      throw unreachable(base, err);
    }
  };
  return {
    url: base,
    async admin<T>(method: "GET" | "POST" | "DELETE", path: string, body?: unknown): Promise<T> {
      const res = await send(`${base}/_edgecache${path}`, {
        method,
        headers: {
          ...(token && { authorization: `Bearer ${token}` }),
          ...(body !== undefined && { "content-type": "application/json" }),
        },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      const text = await res.text();
      const json = parse(text);
      if (!res.ok) throw answerFailure(base, res.status, json, token !== undefined);
      if (json === undefined) {
        throw new CliFailure(`${base} did not answer JSON: is it an edgecache node?`, EXIT.failed);
      }
      return json as T;
    },
    // The admin token is the admin API's: it is not sent with reads of the data (a proxy
    // would pass it on to its origin).
    get: (target, key) =>
      send(new URL(target, `${base}/`).href, { headers: key ? { "x-edgecache-key": key } : {} }),
  };
}

/** The node's URL without a trailing slash: --url and EDGECACHE_URL are checked where read. */
function nodeUrl(value: string): string {
  return new URL(value).href.replace(/\/+$/, "");
}

function parse(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

function unreachable(base: string, err: unknown): CliFailure {
  const e = err as { name?: string; cause?: { code?: string; message?: string } };
  const why =
    e.name === "TimeoutError"
      ? `no answer within ${TIMEOUT_MS / 1000} s`
      : (e.cause?.code ?? e.cause?.message ?? "");
  return new CliFailure(
    `cannot reach ${base}${why ? ` (${why})` : ""}: start a node (edgecache serve), or pass --url or set EDGECACHE_URL`,
    EXIT.unreachable,
  );
}

/** A non-2xx answer as one line that says what to do. */
function answerFailure(base: string, status: number, json: unknown, hadToken: boolean): CliFailure {
  const error = (json as { error?: { code?: string; message?: string } } | undefined)?.error;
  const message = error?.message ?? `HTTP ${status}`;
  if (status === 401) {
    return new CliFailure(
      hadToken
        ? `${base} refused the admin token: check --token or EDGECACHE_ADMIN_TOKEN`
        : `${base} needs an admin token: pass --token or set EDGECACHE_ADMIN_TOKEN`,
      EXIT.refused,
    );
  }
  if (status === 403) {
    return new CliFailure(`${base} refused: ${message} (README, "Security model")`, EXIT.refused);
  }
  if (status === 404) return new CliFailure(message, EXIT.notFound);
  return new CliFailure(`${base} answered ${status}: ${message}`, EXIT.failed);
}
