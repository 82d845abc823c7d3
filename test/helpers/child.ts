import type { ChildProcess } from "node:child_process";

/** Resolves with the first stdout match of `pattern`; rejects if the process exits first. */
export function waitForLine(child: ChildProcess, pattern: RegExp): Promise<RegExpExecArray> {
  return new Promise((done, fail) => {
    let out = "";
    let err = "";
    child.stderr?.on("data", (chunk) => {
      err += chunk;
    });
    child.stdout?.on("data", (chunk) => {
      out += chunk;
      const m = pattern.exec(out);
      if (m) done(m);
    });
    child.once("exit", (code) => fail(new Error(`exited with ${code}\n${out}\n${err}`)));
  });
}
