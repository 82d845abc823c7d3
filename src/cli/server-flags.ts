import type { ArgDef } from "citty";
import {
  defaultOf,
  type Mode,
  SERVER_OPTIONS,
  type ServerOption,
} from "../adapter/node/options.ts";

type Option = (typeof SERVER_OPTIONS)[number];

/** citty's description of `mode`'s flags, typed flag by flag as if written out. */
export type ServerArgs<M extends Mode> = {
  [O in Option as O extends { flag: infer F extends string; in: readonly (infer I)[] }
    ? M extends I
      ? F
      : never
    : never]: O extends { value: "boolean" }
    ? { type: "boolean"; description: string }
    : { type: "string"; description: string; valueHint?: string };
};

/**
 * The flags of `edgecache serve` or `edgecache proxy`, made from the options' one
 * description (adapter/node/options.ts). A typed value gets its valueHint, which
 * checkFlags checks before the command runs.
 */
export function serverArgs<M extends Mode>(mode: M): ServerArgs<M> {
  const args: Record<string, ArgDef> = {};
  for (const o of SERVER_OPTIONS as readonly ServerOption[]) {
    if (o.flag === undefined || !o.in.includes(mode)) continue;
    const description = `${o.doc}${defaults(o, mode)}`;
    args[o.flag] =
      o.value === "boolean"
        ? { type: "boolean", description }
        : {
            type: "string",
            description,
            ...(o.value && { valueHint: o.value === "list" ? "a,b" : o.value }),
          };
  }
  return args as ServerArgs<M>;
}

/** " (default: PORT, the config, or 8787)": where the value comes from without the flag. */
function defaults(o: ServerOption, mode: Mode): string {
  const from = [o.env, o.key && "the config", defaultOf(o, mode)].filter((s) => !!s);
  if (from.length === 0) return "";
  const last = from.pop();
  return ` (default: ${from.length > 0 ? `${from.join(", ")}${from.length > 1 ? "," : ""} or ` : ""}${last})`;
}
