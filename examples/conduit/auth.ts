/**
 * Conduit's authentication, kept small: a token is the user's id signed with HMAC-SHA256
 * (`Authorization: Token <id>.<signature>`), a password is stored as a salted SHA-256.
 */
import { createHash, createHmac, randomBytes, timingSafeEqual } from "node:crypto";

/** The signing secret: CONDUIT_SECRET, or a fixed one for the example. */
const SECRET = process.env.CONDUIT_SECRET ?? "conduit-example-secret";

function signature(id: number): string {
  return createHmac("sha256", SECRET).update(String(id)).digest("base64url");
}

/** The token of user `id`; the same in every process that shares the secret. */
export function tokenFor(id: number): string {
  return `${id}.${signature(id)}`;
}

/** The user id a token was signed for, or undefined if it was not signed here. */
export function userOfToken(token: string): number | undefined {
  const [id, sig] = token.split(".");
  const n = Number(id);
  if (!Number.isSafeInteger(n) || n <= 0 || sig === undefined) return undefined;
  const expected = Buffer.from(signature(n));
  const given = Buffer.from(sig);
  return given.length === expected.length && timingSafeEqual(given, expected) ? n : undefined;
}

export function hashPassword(password: string, salt = randomBytes(8).toString("hex")): string {
  return `${salt}$${createHash("sha256").update(`${salt}:${password}`).digest("hex")}`;
}

export function checkPassword(password: string, stored: string): boolean {
  const [salt] = stored.split("$");
  return salt !== undefined && hashPassword(password, salt) === stored;
}
