import { defineCommand } from "citty";
import { checkRule } from "../../app/proxy/learn/rules.ts";
import { CliFailure, EXIT, usageError } from "../run.ts";
import { JSON_ARG, NODE_ARGS, nodeClient } from "./node-client.ts";

const args = {
  action: {
    type: "positional",
    required: false,
    description: "list (default), pin, reject, add (a hand-written rule), learned or forget",
  },
  write: {
    type: "positional",
    required: false,
    description: 'The rule\'s write, e.g. "PATCH /api/users/:id" (quoted: it has a space)',
  },
  read: {
    type: "positional",
    required: false,
    description: "The rule's read, e.g. /api/users/$1/profile",
  },
  ...JSON_ARG,
  ...NODE_ARGS,
} as const;

/** What each action asks the node to set the rule to. */
const STATES: Record<string, string> = {
  pin: "pinned",
  reject: "rejected",
  add: "manual",
  learned: "learned",
  forget: "forget",
};

interface RuleView {
  id: string;
  state: string;
  acts: boolean;
  held: number;
  tested: number;
  confidence: number;
}

/** `edgecache rules`: proxy mode's learned rules, listed, pinned, rejected or written by hand. */
export const rules = defineCommand({
  meta: {
    name: "rules",
    description: "Proxy mode with --learn: list learned rules, pin, reject or add one",
  },
  args,
  async run({ args: a }) {
    const action = a.action ?? "list";
    if (action !== "list" && !(action in STATES)) {
      throw usageError(
        `expected an action: list, ${Object.keys(STATES).join(", ")}; got ${JSON.stringify(action)}`,
      );
    }
    if (action !== "list" && (a.write === undefined || a.read === undefined)) {
      throw usageError(
        `${action}: expected a write and a read, e.g. "PATCH /api/users/:id" /api/users/$1/profile`,
      );
    }
    // Checked here too, so a mistyped rule is a usage error (exit 2) before any request.
    const problem = action === "list" ? undefined : checkRule(a.write, a.read);
    if (problem) throw usageError(problem);
    const node = nodeClient(a);
    try {
      if (action === "list") {
        const report = await node.admin<{ rules: RuleView[] }>("GET", "/rules");
        if (a.json) console.log(JSON.stringify(report));
        else if (report.rules.length === 0) console.log("no rules yet");
        else {
          for (const r of report.rules) {
            console.log(
              `${r.acts ? "acts" : "    "}  ${r.state.padEnd(8)} ${String(r.held).padStart(4)}/${String(r.tested).padEnd(4)} ${r.id}`,
            );
          }
        }
        return;
      }
      const answer = await node.admin<{ rule?: RuleView; forgotten?: boolean }>("POST", "/rules", {
        write: a.write,
        read: a.read,
        state: STATES[action],
      });
      if (a.json) console.log(JSON.stringify(answer));
      else if (answer.rule) console.log(`${answer.rule.state} ${answer.rule.id}`);
      else console.log(answer.forgotten ? "forgotten" : "no such rule");
    } catch (err) {
      if (err instanceof CliFailure && err.exitCode === EXIT.notFound) {
        throw usageError(
          `${node.url} does not learn rules (start it with edgecache proxy --learn; a Worker with edgecacheProxyWorker({ learn }))`,
        );
      }
      throw err;
    }
  },
});
