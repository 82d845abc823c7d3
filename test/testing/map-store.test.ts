import { storeConformance } from "../../src/testing/index.ts";
import { mapStore } from "./map-store.ts";

// The suite's fake clock drives expiry, so TTL tests take no time.
storeConformance("map", (clock) => mapStore({ now: clock.now }));
