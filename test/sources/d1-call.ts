import type { Miniflare } from "miniflare";

/**
 * One call of the D1 source inside workerd (d1-entry.ts): the operation in the
 * path, its arguments as a JSON array; resolves with the result as JSON, rejects with an
 * error carrying the EdgecacheError's code.
 */
export async function callD1Source(
  mf: Miniflare,
  op: string,
  ...args: unknown[]
): Promise<unknown> {
  const res = await mf.dispatchFetch(`http://localhost/${op}`, {
    method: "POST",
    body: JSON.stringify(args),
  });
  const body = (await res.json()) as { error?: { code?: string; message: string } } | null;
  if (res.status === 500) throw Object.assign(new Error(body!.error!.message), body!.error);
  return body;
}
