/**
 * Exit codes a script can rely on (README, "Command line"). Usage errors are 2 as in
 * POSIX utilities; the rest say whose fault it was without parsing the message.
 */
export const EXIT = {
  ok: 0,
  /** The node answered with an error, or some of the work failed (a warm URL, a 5xx). */
  failed: 1,
  /** A flag or argument is missing or wrong; nothing was sent. */
  usage: 2,
  /** The node could not be reached (refused, no such host, timed out). */
  unreachable: 3,
  /** The node refused the credentials (401) or the client (403). */
  refused: 4,
  /** What was asked for does not exist (a key that is not cached). */
  notFound: 5,
} as const;

/** An error the user can act on: one line, and the exit code that classifies it. */
export class CliFailure extends Error {
  override readonly name = "CliFailure";
  constructor(
    message: string,
    readonly exitCode: number,
  ) {
    super(message);
  }
}

export const usageError = (message: string) => new CliFailure(message, EXIT.usage);
