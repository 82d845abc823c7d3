import { EdgecacheError } from "../core/errors.ts";

/** An EdgecacheError is the user's to fix: one line that says what, no stack trace. */
export async function friendly(work: () => Promise<void>): Promise<void> {
  try {
    await work();
  } catch (err) {
    if (!(err instanceof EdgecacheError)) throw err;
    console.error(err.message);
    process.exit(1);
  }
}
