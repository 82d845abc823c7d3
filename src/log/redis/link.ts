import { rateLimited, type Warner } from "../../core/report.ts";
import { duplicateClient, type RedisClient } from "../../stores/redis-connect.ts";
import { logKeys, type ScriptClient, withScripts } from "./scripts.ts";

export const C = "redis-log";
export const RETRY_MS = 50;

export interface Settings {
  sourceStamp?: { start: string; current(): string };
  client: RedisClient;
  owned: boolean;
  commandTimeout: number;
  prefix: string;
  leaseMs: number;
  retain: number;
  appendTimeoutMs: number;
  node: string;
  logger: Warner;
}

/**
 * What the writer and the follower of one node share: the client with the log's scripts,
 * the log's keys, the wake-ups heard on its channel, and the count of failed requests.
 */
export class Link {
  readonly s: Settings;
  readonly client: ScriptClient;
  readonly keys: string[];
  readonly channel: string;
  readonly node: string;
  readonly report: ReturnType<typeof rateLimited>;
  failures = 0;
  closed = false;
  /** Wake-ups heard so far: a barrier that heard one while it asked goes again at once. */
  wakes = 0;
  #wake = new Set<() => void>();
  #subscriber: RedisClient;

  constructor(settings: Settings) {
    this.s = settings;
    this.node = settings.node;
    ({ keys: this.keys, channel: this.channel } = logKeys(settings.prefix));
    this.report = rateLimited(settings.logger, () => performance.now());
    this.client = withScripts(settings.client, this.keys.length);
    this.#subscriber = duplicateClient(settings.client, undefined);
    this.#subscriber.on("message", () => {
      this.wakes++;
      this.#wakeAll();
    });
    this.#subscriber.subscribe(this.channel).catch(() => {}); // resubscribes on reconnect
  }

  /** Resolves at the next wake-up heard, or after `ms`. */
  woken(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const timer = setTimeout(done, ms);
      const wake = this.#wake;
      function done() {
        clearTimeout(timer);
        wake.delete(done);
        resolve();
      }
      wake.add(done);
    });
  }

  /** Stops: whoever waits for a wake-up goes on (and finds the log closed). */
  close(): void {
    this.closed = true;
    for (const wake of this.#wake) wake();
    this.#subscriber.disconnect();
  }

  #wakeAll(): void {
    const waiting = [...this.#wake];
    this.#wake.clear();
    for (const wake of waiting) wake();
  }
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
