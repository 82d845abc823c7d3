import net from "node:net";
import { afterEach, expect, test } from "vitest";
import { Relay } from "../../bench/lib/relay.ts";

let relay: Relay | undefined;
let echo: net.Server | undefined;

afterEach(async () => {
  await relay?.close();
  await new Promise((resolve) => (echo ? echo.close(resolve) : resolve(undefined)));
});

async function echoServer(): Promise<number> {
  echo = net.createServer((s) => s.pipe(s));
  await new Promise<void>((resolve) => echo!.listen(0, "127.0.0.1", resolve));
  return (echo.address() as net.AddressInfo).port;
}

/** Sends `chunks` one by one and resolves with everything echoed and when it all came back. */
function roundTrip(port: number, chunks: string[]): Promise<{ text: string; ms: number }> {
  return new Promise((resolve, reject) => {
    const start = performance.now();
    const socket = net.connect(port, "127.0.0.1");
    const expected = chunks.join("").length;
    let text = "";
    socket.on("data", (d) => {
      text += d.toString();
      if (text.length >= expected) {
        socket.end();
        resolve({ text, ms: performance.now() - start });
      }
    });
    socket.on("error", reject);
    for (const c of chunks) socket.write(c);
  });
}

test("the relay keeps bytes and their order, and holds them a round trip", async () => {
  const port = await echoServer();
  relay = await Relay.start({ target: { host: "127.0.0.1", port }, rttMs: 30 });
  const chunks = Array.from({ length: 50 }, (_, i) => `chunk-${i};`);
  const { text, ms } = await roundTrip(relay.port, chunks);
  expect(text).toBe(chunks.join(""));
  // A lower bound: the relay may be slower on a busy machine, never faster than the link.
  expect(ms).toBeGreaterThanOrEqual(29);
});

test("a partition holds traffic without losing it, and heal delivers it", async () => {
  const port = await echoServer();
  relay = await Relay.start({ target: { host: "127.0.0.1", port }, rttMs: 0 });
  relay.partition();
  let done = false;
  const trip = roundTrip(relay.port, ["held"]).then((r) => {
    done = true;
    return r;
  });
  await new Promise((r) => setTimeout(r, 100));
  expect(done).toBe(false);
  relay.heal();
  expect((await trip).text).toBe("held");
});
