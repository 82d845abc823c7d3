/**
 * One job of edgecache's change-log namespace (`ChangeLogObject`): the log, hot keys, learned
 * rules or a regional follower. Each answers the ops under its prefix (the prefix taken off);
 * a job that sets alarms answers them too.
 */
export interface ObjectJob {
  handle(op: string, body: Record<string, unknown>): Response | Promise<Response>;
  alarm?(): Promise<void>;
}
