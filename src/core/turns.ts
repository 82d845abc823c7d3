/**
 * Work that takes turns: each piece starts once the one asked before it has settled, in
 * the order asked (a connection that runs one thing at a time: a node-postgres `Client`,
 * a libSQL client on one connection). A failure ends its own turn only.
 */
export class Turns {
  /** The last work asked for (settled, never rejected). */
  #last: Promise<unknown> = Promise.resolve();

  run<T>(work: () => Promise<T>): Promise<T> {
    const done = this.#last.then(work);
    this.#last = done.catch(() => {});
    return done;
  }
}
