import { ChangeLogHost, type DurableObjectStateLike } from "../../log/durable-object.ts";
import { HotKeysHost } from "./hot-keys.ts";

/**
 * The Durable Object class of the change log. Bind it in `wrangler.jsonc`
 * (`durable_objects` and a `migrations` entry with `new_sqlite_classes`) and export it
 * from the Worker.
 *
 * It hosts two collaborators: the log (`ChangeLogHost`) and, in the object named
 * `HOT_KEYS_OBJECT`, the hot-key totals (`HotKeysHost`). The totals live in an object of
 * their own name, so the log's object is not loaded with them; one class keeps the
 * Worker's config short.
 */
export class ChangeLogObject {
  #log: ChangeLogHost;
  #hot: HotKeysHost | undefined;

  constructor(state: DurableObjectStateLike, _env?: unknown) {
    this.#log = new ChangeLogHost(state);
  }

  async fetch(request: Request): Promise<Response> {
    const op = new URL(request.url).pathname.slice(1);
    const body = (await request.json()) as Record<string, unknown>;
    if (op.startsWith("hot/")) {
      this.#hot ??= new HotKeysHost();
      return this.#hot.handle(op.slice(4), body);
    }
    return this.#log.handle(op, body);
  }
}
