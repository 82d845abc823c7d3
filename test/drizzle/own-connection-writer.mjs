// Another process writing the same SQLite file: inserts rows as fast as it can until
// killed, printing each acknowledged id.
import { createClient } from "@libsql/client";

const client = createClient({ url: `file:${process.argv[2]}`, timeout: 5000 });
for (let id = 100_000; ; id++) {
  try {
    await client.execute({
      sql: "insert into items (id, owner, n) values (?, 'other', 0)",
      args: [id],
    });
    process.stdout.write(`${id}\n`);
  } catch {
    // Busy past the timeout: not acknowledged.
  }
  await new Promise((r) => setTimeout(r, 2));
}
