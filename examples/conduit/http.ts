/**
 * What every Conduit route shares: the viewer read from `Authorization: Token ...`, and
 * errors in the RealWorld spec's form (`{ "errors": { "body": [...] } }`).
 */
import type { Context, MiddlewareHandler } from "hono";
import { HTTPException } from "hono/http-exception";
import type { ContentfulStatusCode } from "hono/utils/http-status";
import { userOfToken } from "./auth.ts";

export type ConduitEnv = { Variables: { viewer: number | undefined } };

export class ConduitError extends HTTPException {
  constructor(status: ContentfulStatusCode, message: string) {
    super(status, {
      res: new Response(JSON.stringify({ errors: { body: [message] } }), {
        status,
        headers: { "content-type": "application/json" },
      }),
    });
  }
}

/** Reads the viewer from the token, if any; a token not signed here is a 401. */
export const viewerFromToken: MiddlewareHandler<ConduitEnv> = async (c, next) => {
  const header = c.req.header("authorization");
  if (header === undefined) {
    c.set("viewer", undefined);
    return next();
  }
  const match = /^Token (\S+)$/.exec(header);
  const viewer = match?.[1] === undefined ? undefined : userOfToken(match[1]);
  if (viewer === undefined) throw new ConduitError(401, "invalid token");
  c.set("viewer", viewer);
  return next();
};

/** The viewer, who must be signed in. */
export function requireViewer(c: Context<ConduitEnv>): number {
  const viewer = c.get("viewer");
  if (viewer === undefined) throw new ConduitError(401, "sign in first");
  return viewer;
}

/** The JSON body's `field` object (`{ "article": {...} }`), or a 422. */
export async function bodyOf(c: Context, field: string): Promise<Record<string, unknown>> {
  const body = (await c.req.json().catch(() => undefined)) as Record<string, unknown> | undefined;
  const inner = body?.[field];
  if (typeof inner !== "object" || inner === null) {
    throw new ConduitError(422, `expected a JSON body with "${field}"`);
  }
  return inner as Record<string, unknown>;
}

/** A string field, required or optional; anything else is a 422. */
export function text(body: Record<string, unknown>, name: string, required: true): string;
export function text(body: Record<string, unknown>, name: string): string | undefined;
export function text(body: Record<string, unknown>, name: string, required = false) {
  const value = body[name];
  if (value === undefined && !required) return undefined;
  if (typeof value !== "string" || (required && value.trim() === "")) {
    throw new ConduitError(422, `${name}: expected a non-empty string`);
  }
  return value;
}

/** Whether a database error is a UNIQUE constraint's (Drizzle wraps the driver's). */
export function isUniqueViolation(err: unknown): boolean {
  for (let e = err; e instanceof Error; e = e.cause) {
    if (e.message.includes("UNIQUE constraint failed")) return true;
  }
  return false;
}

/** A non-negative integer query parameter, with a default and a ceiling. */
export function intParam(value: string | undefined, fallback: number, max: number): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0)
    throw new ConduitError(422, `expected an integer, got ${value}`);
  return Math.min(n, max);
}
