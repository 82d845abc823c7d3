import { localChangeLog } from "../../src/log/in-process.ts";
import { changeLogConformance } from "./conformance.ts";

// One process: each instance is a log of its own, always trusted, delivering synchronously;
// a restart resumes from the snapshot its predecessor took at shutdown.
changeLogConformance("in-process", {
  capabilities: { shared: false, turns: false },
  async backend() {
    const logs = new Map<object, ReturnType<typeof localChangeLog>>();
    const open = (resume?: Parameters<typeof localChangeLog>[0]) => {
      const log = localChangeLog(resume);
      logs.set(log, log);
      return log;
    };
    return {
      open: async () => open(),
      async restart(old) {
        const snapshot = logs.get(old)!.snapshot();
        await old.close();
        return open({ resume: snapshot });
      },
      async close() {},
    };
  },
});
