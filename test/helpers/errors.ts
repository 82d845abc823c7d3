import { EdgecacheError } from "../../src/core/errors.ts";

/** The EdgecacheError `fn` throws synchronously; any other error, or none, fails the test. */
export function errorOf(fn: () => unknown): EdgecacheError {
  try {
    fn();
  } catch (err) {
    if (err instanceof EdgecacheError) return err;
    throw err;
  }
  throw new Error("expected an EdgecacheError, nothing was thrown");
}
