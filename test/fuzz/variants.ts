/**
 * The variant generator: requests built from the grammar of encodings (grammar.ts), each
 * sent on a connection of its own so its reply is known, and checked against the
 * invariants (invariants.ts) a defect of issue 70's classes breaks:
 *
 * - no 5xx (but what the mode may answer, `FuzzTarget.allowed`), one 100 Continue at most;
 * - none or several Host fields: 400 (RFC 9112 3.2);
 * - the admin API answers only at its own path as sent, with its token where one is set;
 * - a data API on a loopback listener gives no 2xx to a request for another host;
 * - no origin request holds a dot segment as a common server would decode its target;
 * - no client's claim header (`X-Forwarded-*`... in any spelling) reaches the origin;
 * - an answer the origin built (`X-Echo-Id`) goes only to requests that agree with the one
 *   it was built for on what could change it: path and query, scheme and host the origin
 *   was told, unkeyed headers, credentials.
 *
 * A sequence is a variant and, half the time, its plain twin (same path, origin-form,
 * loopback Host, same or another credential), so an answer stored for the variant and
 * served to the twin is caught within one run, which fast-check can shrink.
 */
import fc from "fast-check";
import type { EchoOrigin } from "./echo-origin.ts";
import { ECHO_ID } from "./echo-origin.ts";
import { hostFields, otherHeaders, targetForms, variantPaths } from "./grammar.ts";
import { type FuzzTarget, render, sendRaw } from "./http-fuzz.ts";
import {
  adminReachProblem,
  claimProblem,
  field,
  hostCountProblem,
  type ParsedReply,
  parseReply,
  rebindingProblem,
  type SentRequest,
  storedAnswerProblem,
  traversalProblem,
} from "./invariants.ts";

/** What the variant generator needs of a mode beside the raw fuzzer's target. */
export interface VariantTarget extends FuzzTarget {
  /** The echo origin behind a proxy or tenant, whose log the origin invariants read. */
  origin?: EchoOrigin;
  /** The admin token, where one is set. */
  adminToken?: string;
  /** A data API on a loopback listener: the rebinding invariant holds. */
  loopbackData?: boolean;
}

export interface VariantRequest extends SentRequest {
  body: string;
}

const METHODS = ["GET", "GET", "GET", "HEAD", "POST", "PUT", "DELETE"];

export function variantRequests(target: VariantTarget): fc.Arbitrary<VariantRequest> {
  return fc
    .record({
      method: fc.constantFrom(...METHODS),
      path: variantPaths(target.paths),
      hosts: hostFields(target.port),
      auth: fc.option(fc.constantFrom(...target.credentials), { freq: 2 }),
      headers: otherHeaders(target.credentials),
      body: target.bodies.map((b) => JSON.stringify(b) ?? ""),
    })
    .chain((r) =>
      targetForms(r.path, target.port).map(
        (t): VariantRequest => ({
          method: r.method,
          target: t,
          hosts: r.hosts,
          headers: [
            ...(r.auth === null ? [] : [["Authorization", r.auth] as [string, string]]),
            ...r.headers,
          ],
          body: ["POST", "PUT"].includes(r.method) ? r.body : "",
        }),
      ),
    );
}

/** The plain twin of a variant: its path as the URL parser reads it, from a loopback client. */
function twin(r: VariantRequest, port: number, credential: string | null): VariantRequest {
  const path = r.target.startsWith("/") ? r.target : r.target.replace(/^[^:]*:\/\/[^/?#]*/, "");
  return {
    method: "GET",
    target: path || "/",
    hosts: [`127.0.0.1:${port}`],
    headers: credential === null ? [] : [["Authorization", credential]],
    body: "",
  };
}

export function variantSequences(target: VariantTarget): fc.Arbitrary<VariantRequest[]> {
  return fc
    .tuple(
      variantRequests(target),
      fc.option(fc.option(fc.constantFrom(...target.credentials), { freq: 2 }), { freq: 2 }),
    )
    .map(([r, t]) => (t === null ? [r] : [r, twin(r, target.port, t)]));
}

function bytesOf(r: VariantRequest): Buffer {
  return render({
    method: r.method,
    target: r.target,
    version: "HTTP/1.1",
    host: r.hosts,
    headers: [...r.headers, ["Connection", "close"]],
    body: r.body,
    framing: "length",
    eol: "\r\n",
  });
}

export function describeRequest(r: VariantRequest): string {
  const head = bytesOf({ ...r, body: "" }).toString("latin1");
  return JSON.stringify(head.length > 600 ? `${head.slice(0, 600)}...` : head);
}

/** Which invariant a violation breaks (names for `collect`'s summary). */
export type Invariant =
  | "no-5xx"
  | "one-100"
  | "host-count"
  | "admin-reach"
  | "rebinding"
  | "stored-answer"
  | "traversal"
  | "claim";

/** Checks variant sequences against one target, remembering which request each answer was built for. */
export class VariantChecker {
  /** Echo id -> the client request that first got the answer built for it. */
  readonly #firstFor = new Map<number, SentRequest>();
  #originSeen = 0;
  readonly statuses: Record<number, number> = {};
  sequences = 0;
  /** With `collect`, the first violation of each invariant and the run it came in. */
  readonly found = new Map<string, { run: number; message: string }>();

  constructor(
    readonly target: VariantTarget,
    /** Records violations instead of throwing: to see every class a build breaks. */
    readonly collect = false,
  ) {}

  async run(seq: readonly VariantRequest[]): Promise<void> {
    this.sequences++;
    for (const r of seq) {
      const { replies } = await sendRaw(this.target.port, bytesOf(r));
      // What reached the origin while this request was answered is its doing.
      const origin = this.#originProblems();
      const wire = replies.find((w) => w.status >= 200);
      const reply = wire && parseReply(wire.text);
      if (reply) this.statuses[reply.status] = (this.statuses[reply.status] ?? 0) + 1;
      const { name } = this.target;
      const checks: [Invariant, string | undefined][] = [...origin];
      if (wire && reply) {
        checks.push(
          ["no-5xx", this.#serverError(wire)],
          [
            "one-100",
            replies.filter((w) => w.status === 100).length > 1
              ? `${replies.filter((w) => w.status === 100).length} interim 100 replies to one request`
              : undefined,
          ],
          ["host-count", hostCountProblem(r, reply)],
          [
            "admin-reach",
            name.startsWith("admin") || name === "data"
              ? adminReachProblem(r, reply, this.target.adminToken)
              : undefined,
          ],
          ["rebinding", this.target.loopbackData ? rebindingProblem(r, reply) : undefined],
          ["stored-answer", this.#storedProblem(r, reply)],
        );
      }
      for (const [kind, problem] of checks) {
        if (problem === undefined) continue;
        const message = `[${name}] ${kind}: ${problem}\nthe request: ${describeRequest(r)}\nthe sequence:\n${seq.map(describeRequest).join("\n")}\nthe reply: ${JSON.stringify(wire?.text.slice(0, 800))}`;
        if (!this.collect) throw new Error(message);
        const sign = `${kind} (${signature(problem)})`;
        if (!this.found.has(sign)) this.found.set(sign, { run: this.sequences, message });
      }
    }
  }

  #serverError(wire: { status: number; text: string }): string | undefined {
    if (wire.status < 500) return undefined;
    if (wire.status !== 500 && this.target.allowed(wire) !== undefined) return undefined;
    return `answered ${wire.status}`;
  }

  #storedProblem(r: VariantRequest, reply: ParsedReply): string | undefined {
    const origin = this.target.origin;
    const id = Number(field(reply.headers, ECHO_ID));
    if (!origin || !(id > 0) || reply.status >= 300) return undefined;
    const seen = origin.byId(id);
    if (!seen) return undefined;
    let first = this.#firstFor.get(id);
    if (!first) {
      first = r;
      this.#firstFor.set(id, r);
    }
    return storedAnswerProblem(seen, first, r);
  }

  /** The invariants of every origin request since the last look. */
  #originProblems(): [Invariant, string | undefined][] {
    const log = this.target.origin?.log ?? [];
    const out: [Invariant, string | undefined][] = [];
    for (; this.#originSeen < log.length; this.#originSeen++) {
      const seen = log[this.#originSeen]!;
      out.push(
        ["traversal", traversalProblem(seen.target)],
        ["claim", claimProblem(seen, { proto: "http", for: "127.0.0.1" })],
      );
    }
    return out;
  }
}

/**
 * What tells one variant of a class from another in `collect`'s summary: the spellings a
 * problem's text shows (Tomcat's `;`, IIS's `\\`, overlong UTF-8...), a header's name.
 */
function signature(problem: string): string {
  const marks: [RegExp, string][] = [
    [/%c0|%c1|%e0%8|%u00/i, "overlong or %u"],
    [/%25/, "double percent"],
    [/;/, "; params"],
    [/\\\\|%5c/i, "backslash"],
    [/https/, "https"],
    [/Host fields/, "Host count"],
    [/carries ([\w-]+)/, "$1"],
  ];
  const out: string[] = [];
  for (const [re, name] of marks) {
    const m = re.exec(problem);
    if (m) out.push(name.replace("$1", m[1] ?? ""));
  }
  return out.join(", ") || problem.replace(/\d+/g, "#").slice(0, 40);
}

export interface VariantOptions {
  runs?: number;
  seed?: number;
  path?: string;
  timeLimitMs?: number;
  /** Records the first violation of each invariant and goes on (see VariantChecker). */
  collect?: boolean;
}

/** Runs variant sequences until `runs` passed or one broke an invariant (then shrunk). */
export async function fuzzVariants(
  target: VariantTarget,
  options: VariantOptions = {},
): Promise<VariantChecker> {
  const checker = new VariantChecker(target, options.collect);
  await fc.assert(
    fc.asyncProperty(variantSequences(target), (seq) => checker.run(seq)),
    {
      numRuns: options.runs ?? 100,
      ...(options.seed !== undefined && { seed: options.seed }),
      ...(options.path !== undefined && { path: options.path }),
      ...(options.timeLimitMs !== undefined && { interruptAfterTimeLimit: options.timeLimitMs }),
      endOnFailure: false,
    },
  );
  return checker;
}
