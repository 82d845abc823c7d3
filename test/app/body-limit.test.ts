import { Hono } from "hono";
import { describe, expect, it } from "vitest";
import { limitBody, MAX_BODY_BYTES } from "../../src/app/errors.ts";

/** A request that counts how often its body's stream is asked for. */
function counting(init: RequestInit): { request: Request; streams: () => number } {
  let streams = 0;
  const request = new Request("http://edgecache.test/", init);
  const body = Object.getOwnPropertyDescriptor(Request.prototype, "body")!.get!;
  Object.defineProperty(request, "body", {
    get() {
      streams++;
      return body.call(request);
    },
  });
  return { request, streams: () => streams };
}

function app(): Hono {
  const a = new Hono();
  a.use("*", limitBody);
  a.post("/", async (c) => c.json(await c.req.json()));
  a.delete("/", (c) => c.body(null, 204));
  return a;
}

describe("the request body limit", () => {
  it("checks a declared length without asking for the body's stream (on Node that builds the web Request)", async () => {
    const body = JSON.stringify({ title: "x" });
    const small = counting({
      method: "POST",
      body,
      headers: { "content-length": String(body.length) },
    });
    const ok = await app().request(small.request);
    expect(ok.status).toBe(200);
    expect(await ok.json()).toEqual({ title: "x" });
    expect(small.streams()).toBe(0);

    const big = counting({
      method: "POST",
      body,
      headers: { "content-length": String(MAX_BODY_BYTES + 1) },
    });
    const refused = await app().request(big.request);
    expect(refused.status).toBe(413);
    expect(((await refused.json()) as { error: { code: string } }).error.code).toBe("E_TOO_LARGE");
    expect(big.streams()).toBe(0);
  });

  it("leaves a DELETE without a body alone (its stream never asked for)", async () => {
    const del = counting({ method: "DELETE" });
    expect((await app().request(del.request)).status).toBe(204);
    expect(del.streams()).toBe(0);
  });

  it("counts a body sent without a declared length as it reads it", async () => {
    const chunk = new Uint8Array(64 * 1024).fill(0x20);
    const chunks = Math.ceil(MAX_BODY_BYTES / chunk.byteLength) + 1;
    let sent = 0;
    const stream = new ReadableStream<Uint8Array>({
      pull(controller) {
        if (sent++ < chunks) controller.enqueue(chunk);
        else controller.close();
      },
    });
    const refused = await app().request(
      new Request("http://edgecache.test/", { method: "POST", body: stream, duplex: "half" }),
    );
    expect(refused.status).toBe(413);
    const ok = await app().request(
      new Request("http://edgecache.test/", {
        method: "POST",
        body: new Blob(['{"a":1}']).stream(),
        duplex: "half",
      }),
    );
    expect(await ok.json()).toEqual({ a: 1 });
  });
});
