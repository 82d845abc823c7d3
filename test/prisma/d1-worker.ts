import type { Miniflare } from "miniflare";
import { startWorker } from "../helpers/workerd.ts";
import { FOLLOWING_BINDINGS } from "../query-cache/d1-follow.ts";
import { generatedEntry } from "./client.ts";

/**
 * The Worker of d1-entry.ts inside workerd, with the bindings of the other ORMs' D1 Worker:
 * the Prisma client generated for workerd (schema.d1.prisma) bundled in, its query compiler
 * a compiled WebAssembly module beside the script.
 */
export function startPrismaD1(): Promise<Miniflare> {
  return startWorker(new URL("./d1-entry.ts", import.meta.url), FOLLOWING_BINDINGS, {
    aliases: {
      "edgecache-test:prisma-d1-client": generatedEntry(
        new URL("./schema.d1.prisma", import.meta.url).pathname,
      ),
    },
  });
}
