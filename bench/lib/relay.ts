/**
 * A TCP relay that puts distance between a client and a server: each chunk is held for
 * half the round trip in each direction, in order, as a link `rttMs` long would. This
 * kernel has no `netem`, so the benchmarks and tests that measure edgecache across regions
 * point a node's Redis or PostgreSQL URL at one of these instead of at the server.
 *
 * `partition()` stops forwarding (bytes are held, as on a link that went dark, and the
 * connections stay open); `heal()` delivers what was held and forwards again. `cut()`
 * resets every open connection instead, as a crashed middlebox would.
 */
import net from "node:net";

export interface RelayOptions {
  /** Where the relay forwards to. */
  target: { host: string; port: number };
  /** Round trip the relay adds, ms (half each way). */
  rttMs: number;
  /** Port to listen on (0: any free port). */
  port?: number;
}

interface Pending {
  due: number;
  chunk: Buffer;
}

/** One direction of one connection: chunks leave in order, each no earlier than its due time. */
class DelayedPipe {
  #queue: Pending[] = [];
  #timer: NodeJS.Timeout | undefined;
  #ending = false;

  constructor(
    private readonly to: net.Socket,
    private readonly relay: Relay,
  ) {}

  push(chunk: Buffer): void {
    this.#queue.push({ due: performance.now() + this.relay.rttMs / 2, chunk });
    this.flush();
  }

  flush(): void {
    if (this.#timer) return;
    const now = performance.now();
    while (this.#queue.length > 0 && !this.relay.partitioned) {
      const head = this.#queue[0]!;
      if (head.due > now) {
        this.#timer = setTimeout(
          () => {
            this.#timer = undefined;
            this.flush();
          },
          Math.max(0, Math.ceil(head.due - now)),
        );
        return;
      }
      this.#queue.shift();
      if (!this.to.destroyed) this.to.write(head.chunk);
    }
    if (this.#ending && this.#queue.length === 0) this.to.end();
  }

  /** The sending side finished: the other side is ended once what is held has left. */
  end(): void {
    this.#ending = true;
    this.flush();
  }

  stop(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#queue = [];
  }
}

/** `url` pointed at 127.0.0.1:`port` (a relay's), the rest of it kept. */
export function viaPort(url: string, port: number): string {
  const u = new URL(url);
  u.hostname = "127.0.0.1";
  u.port = String(port);
  return u.toString().replace(/\/$/, url.endsWith("/") ? "/" : "");
}

export class Relay {
  readonly #server: net.Server;
  readonly #sockets = new Set<net.Socket>();
  readonly #pipes = new Set<DelayedPipe>();
  #partitioned = false;
  rttMs: number;
  port = 0;

  private constructor(readonly options: RelayOptions) {
    this.rttMs = options.rttMs;
    this.#server = net.createServer({ allowHalfOpen: true }, (client) => this.#connect(client));
  }

  /** Starts a relay and resolves once it listens on 127.0.0.1. */
  static async start(options: RelayOptions): Promise<Relay> {
    const relay = new Relay(options);
    await new Promise<void>((resolve, reject) => {
      relay.#server.once("error", reject);
      relay.#server.listen(options.port ?? 0, "127.0.0.1", () => resolve());
    });
    relay.port = (relay.#server.address() as net.AddressInfo).port;
    return relay;
  }

  get partitioned(): boolean {
    return this.#partitioned;
  }

  /** `redis://127.0.0.1:<relay port>` and the like: `url` with its host and port replaced. */
  url(url: string): string {
    return viaPort(url, this.port);
  }

  /** The link goes dark: nothing is forwarded, and nothing is lost, until `heal()`. */
  partition(): void {
    this.#partitioned = true;
  }

  heal(): void {
    this.#partitioned = false;
    for (const pipe of this.#pipes) pipe.flush();
  }

  /** Resets every connection open through the relay (new ones are still accepted). */
  cut(): void {
    for (const socket of this.#sockets) socket.destroy();
  }

  async close(): Promise<void> {
    this.cut();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  #connect(client: net.Socket): void {
    const server = net.connect({
      port: this.options.target.port,
      host: this.options.target.host,
      allowHalfOpen: true,
    });
    client.setNoDelay(true);
    server.setNoDelay(true);
    const up = new DelayedPipe(server, this);
    const down = new DelayedPipe(client, this);
    const sockets = [client, server];
    for (const s of sockets) this.#sockets.add(s);
    this.#pipes.add(up);
    this.#pipes.add(down);
    client.on("data", (chunk) => up.push(chunk));
    server.on("data", (chunk) => down.push(chunk));
    const end = () => {
      up.stop();
      down.stop();
      this.#pipes.delete(up);
      this.#pipes.delete(down);
      for (const s of sockets) {
        this.#sockets.delete(s);
        s.destroy();
      }
    };
    client.on("end", () => up.end());
    server.on("end", () => down.end());
    client.on("close", end);
    server.on("close", end);
    client.on("error", end);
    server.on("error", end);
  }
}
