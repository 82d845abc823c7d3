import { describe } from "vitest";
import { libsqlHarness } from "./drivers.ts";
import { drizzleSuite } from "./suite.ts";

describe("drizzle on libSQL (file URL)", () => {
  drizzleSuite(() => libsqlHarness());
});
