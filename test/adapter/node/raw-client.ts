import { connect, type Socket } from "node:net";

/** One response as it came off the wire. */
export interface WireReply {
  /** `HTTP/1.1 200 OK` */
  statusLine: string;
  status: number;
  /** In order, names as sent. */
  fields: [string, string][];
  body: Buffer;
  /** The whole response, Date's value blanked (it may tick between two servers). */
  bytes: string;
  header(name: string): string | undefined;
}

export interface Exchange {
  replies: WireReply[];
  /** Whether the server closed the connection. */
  closed: boolean;
}

/**
 * A plain TCP client: sends `bytes` as one write and reads responses to `methods` (one per
 * request, for HEAD's bodiless replies) until all came or the server closed; 1xx interim
 * responses are replies of their own. Node's client would refuse to send malformed heads.
 */
export function exchange(
  port: number,
  bytes: string | Buffer,
  methods: string[],
  options: { waitForClose?: boolean; socket?: Socket } = {},
): Promise<Exchange> {
  return new Promise((resolve, reject) => {
    const socket = options.socket ?? connect(port, "127.0.0.1");
    let input = Buffer.alloc(0);
    const replies: WireReply[] = [];
    const pending = [...methods];
    let done = false;
    const finish = (closed: boolean) => {
      if (done) return;
      done = true;
      socket.off("data", onData);
      resolve({ replies, closed });
    };
    const onData = (chunk: Buffer) => {
      input = Buffer.concat([input, chunk]);
      for (;;) {
        const reply = parseReply(input, pending[0] ?? "GET", false);
        if (!reply) break;
        input = input.subarray(reply.length);
        replies.push(reply.reply);
        if (reply.reply.status >= 200) pending.shift();
      }
      if (pending.length === 0 && !options.waitForClose) finish(false);
    };
    socket.on("data", onData);
    socket.once("close", () => {
      const last = parseReply(input, pending[0] ?? "GET", true);
      if (last) replies.push(last.reply);
      finish(true);
    });
    socket.once("error", (err) => (done ? undefined : reject(err)));
    socket.write(bytes);
  });
}

function parseReply(
  input: Buffer,
  method: string,
  atClose: boolean,
): { reply: WireReply; length: number } | undefined {
  const text = input.toString("latin1");
  const end = text.indexOf("\r\n\r\n");
  if (end < 0) return undefined;
  const [statusLine, ...lines] = text.slice(0, end).split("\r\n");
  const status = Number(statusLine!.split(" ")[1]);
  const fields = lines.map((line): [string, string] => {
    const colon = line.indexOf(":");
    return [line.slice(0, colon), line.slice(colon + 1).trim()];
  });
  const header = (name: string) => fields.find(([n]) => n.toLowerCase() === name)?.[1];
  let length: number;
  let body: Buffer;
  if (method === "HEAD" || status < 200 || status === 204 || status === 304) {
    length = 0;
    body = Buffer.alloc(0);
  } else if (header("transfer-encoding") === "chunked") {
    const chunks = dechunk(input, end + 4);
    if (!chunks) return undefined;
    [body, length] = [chunks.body, chunks.end - end - 4];
  } else if (header("content-length") !== undefined || !atClose) {
    if (header("content-length") === undefined) return undefined;
    length = Number(header("content-length"));
    body = input.subarray(end + 4, end + 4 + length);
  } else {
    length = input.length - end - 4;
    body = input.subarray(end + 4);
  }
  if (input.length < end + 4 + length) return undefined;
  const whole = text.slice(0, end + 4 + length);
  return {
    reply: {
      statusLine: statusLine!,
      status,
      fields,
      body,
      bytes: whole.replace(/\r\nDate: [^\r]*/, "\r\nDate: -"),
      header,
    },
    length: end + 4 + length,
  };
}

/** A chunked body from `start`: its bytes and where the message ends; undefined: not all in. */
function dechunk(input: Buffer, start: number): { body: Buffer; end: number } | undefined {
  const parts: Buffer[] = [];
  for (let pos = start; ; ) {
    const eol = input.indexOf("\r\n", pos);
    if (eol < 0) return undefined;
    const size = Number.parseInt(input.subarray(pos, eol).toString("latin1"), 16);
    if (size === 0) {
      return input.length < eol + 4 ? undefined : { body: Buffer.concat(parts), end: eol + 4 };
    }
    if (input.length < eol + 2 + size + 2) return undefined;
    parts.push(input.subarray(eol + 2, eol + 2 + size));
    pos = eol + 2 + size + 2;
  }
}

/** Resolves when the server closes `socket` (or rejects after `ms`). */
export function closedWithin(socket: Socket, ms: number): Promise<number> {
  const start = Date.now();
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`still open after ${ms} ms`)), ms);
    socket.once("close", () => {
      clearTimeout(timer);
      resolve(Date.now() - start);
    });
    socket.resume();
  });
}
