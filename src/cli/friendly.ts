import { EdgecacheError } from "../core/errors.ts";
import { EXIT } from "./run.ts";

/** An EdgecacheError is the user's to fix: one line that says what, no stack trace. */
export async function friendly(work: () => Promise<void>): Promise<void> {
  try {
    await work();
  } catch (err) {
    if (!(err instanceof EdgecacheError)) throw err;
    console.error(err.message);
    // A bad flag or config is a usage error (README, "Command line": exit codes).
    process.exit(err.code === "E_BAD_OPTION" ? EXIT.usage : EXIT.failed);
  }
}
