import { defineCommand } from "citty";
import { flagValues, MANY } from "../flags.ts";
import { CliFailure, EXIT, usageError } from "../run.ts";
import { JSON_ARG, NODE_ARGS, nodeClient } from "./node-client.ts";

const args = {
  urls: {
    type: "positional",
    required: false,
    description: "URLs or paths to purge, every Vary variant of each",
    valueHint: `url${MANY}`,
  },
  tag: {
    type: "string",
    description: "Every response the origin tagged so (Cache-Tag, Surrogate-Key; repeatable)",
    valueHint: "tag",
  },
  prefix: {
    type: "string",
    description: "Every response under this path, e.g. /v1/users/",
    valueHint: "path",
  },
  ...JSON_ARG,
  ...NODE_ARGS,
} as const;

/** `edgecache purge`: proxy mode's purge by URL, origin tag or path prefix. */
export const purge = defineCommand({
  meta: {
    name: "purge",
    description: "Proxy mode: purge responses by URL, origin tag or path prefix",
  },
  args,
  async run({ args: a, rawArgs }) {
    const urls = a._;
    const tags = flagValues(rawArgs, "tag");
    if (a.prefix !== undefined && !a.prefix.startsWith("/")) {
      throw usageError(
        `--prefix: expected a path starting with "/", got ${JSON.stringify(a.prefix)}`,
      );
    }
    if (urls.length === 0 && tags.length === 0 && a.prefix === undefined) {
      throw usageError("expected URLs, --tag or --prefix");
    }
    const node = nodeClient(a);
    let reply: { purged: number; uncounted?: string };
    try {
      reply = await node.admin<{ purged: number; uncounted?: string }>("POST", "/purge", {
        urls,
        tags,
        ...(a.prefix !== undefined && { prefix: a.prefix }),
      });
    } catch (err) {
      // A data API node has no purge: its entries are invalidated by what they depend on.
      if (err instanceof CliFailure && err.exitCode === EXIT.notFound) {
        throw usageError(
          `${node.url} is not a proxy (edgecache proxy); for the data API use edgecache invalidate`,
        );
      }
      throw err;
    }
    const { purged, uncounted } = reply;
    if (a.json) console.log(JSON.stringify(reply));
    else {
      console.log(`purged ${purged} ${purged === 1 ? "response" : "responses"}`);
      if (uncounted) console.log(`not counted: ${uncounted}`);
    }
  },
});
