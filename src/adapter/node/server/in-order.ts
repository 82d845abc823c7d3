import type { IncomingMessage, ServerResponse } from "node:http";
import type { Socket } from "node:net";

type Listener = (req: IncomingMessage, res: ServerResponse) => void;

/** RFC 9110 9.2.1. */
const SAFE_METHODS = new Set(["GET", "HEAD", "OPTIONS", "TRACE"]);

/**
 * node:http emits `request` for each pipelined request as soon as its head is parsed, and
 * only orders the responses; RFC 9112 9.3.2 allows processing pipelined requests in parallel
 * only when they are all safe. So, per connection: a safe request starts at once unless an
 * unsafe one is before it (running or waiting); an unsafe one starts when every request
 * before it has finished, and holds back every one after it until it has finished itself.
 * A request has finished when its response has (`finish`, or `close` if the connection
 * went first); one answered synchronously has finished when the listener returns.
 *
 * The raw path needs none of this: it answers plain GETs and HEADs synchronously, in order,
 * and gives the connection to node:http at its first other request, never to take it back.
 */
export function inOrder(listener: Listener): Listener {
  const connections = new WeakMap<Socket, Turns>();
  return (req, res) => {
    let turns = connections.get(req.socket);
    if (!turns) {
      turns = new Turns(listener);
      connections.set(req.socket, turns);
      req.socket.once("close", turns.drop);
    }
    turns.enter(req, res);
  };
}

interface Waiting {
  req: IncomingMessage;
  res: ServerResponse;
  safe: boolean;
}

/** One connection's requests: those running and those waiting for their turn, in order. */
class Turns {
  readonly #listener: Listener;
  #running = 0;
  #unsafeRunning = false;
  #waiting: Waiting[] = [];
  /** Set while #next starts requests: one answered at once must not start the rest itself. */
  #starting = false;

  constructor(listener: Listener) {
    this.#listener = listener;
  }

  enter(req: IncomingMessage, res: ServerResponse): void {
    const request = { req, res, safe: SAFE_METHODS.has(req.method ?? "") };
    if (this.#waiting.length === 0 && this.#mayStart(request.safe)) this.#start(request);
    else this.#waiting.push(request);
  }

  /** The connection closed: requests that have not started never will (no one to answer). */
  readonly drop = () => {
    this.#waiting = [];
  };

  #mayStart(safe: boolean): boolean {
    return safe ? !this.#unsafeRunning : this.#running === 0;
  }

  #start({ req, res, safe }: Waiting): void {
    this.#running++;
    if (!safe) this.#unsafeRunning = true;
    let finished = false;
    const finish = () => {
      if (finished) return;
      finished = true;
      this.#running--;
      if (!safe) this.#unsafeRunning = false;
      this.#next();
    };
    try {
      this.#listener(req, res);
    } finally {
      // A hit is answered before the listener returns: no listeners to add.
      if (res.writableEnded) finish();
      else {
        res.once("finish", finish);
        res.once("close", finish);
      }
    }
  }

  #next(): void {
    if (this.#starting) return;
    this.#starting = true;
    try {
      while (this.#waiting.length > 0 && this.#mayStart(this.#waiting[0]!.safe)) {
        this.#start(this.#waiting.shift()!);
      }
    } finally {
      this.#starting = false;
    }
  }
}
