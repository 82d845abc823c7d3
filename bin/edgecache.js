#!/usr/bin/env node
// In a clone of the repository, runs the TypeScript sources through tsx (so edits take
// effect without a build); in the published package, which ships only dist/, the build.
import { existsSync } from "node:fs";

const source = new URL("../src/cli/main.ts", import.meta.url);
if (existsSync(source)) {
  const { register } = await import("tsx/esm/api");
  register();
  await import(source.href);
} else {
  await import(new URL("../dist/cli/main.js", import.meta.url).href);
}
