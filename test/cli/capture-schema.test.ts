import postgres from "postgres";
import { afterAll, beforeAll, expect, it } from "vitest";
import { edgecache } from "../helpers/built-cli.ts";
import { requirePostgres } from "../helpers/services.ts";

// `edgecache capture install|status|uninstall --schema`: capture for the tables of a
// PostgreSQL schema other than public (a Drizzle `pgSchema`), from the command line.

const pg = await requirePostgres();
const schema = `ec_cli_${process.pid}_${Math.random().toString(36).slice(2, 8)}`;

pg.describe("edgecache capture --schema (PostgreSQL)", () => {
  let admin: postgres.Sql;
  const cli = async (...args: string[]) =>
    (await edgecache(["capture", ...args, "--db", pg.url, "--schema", schema])).stdout;

  beforeAll(async () => {
    admin = postgres(pg.url, { max: 1, onnotice: () => {} });
    await admin.unsafe(
      `create schema ${schema}; create table ${schema}.items (id int primary key)`,
    );
  });
  afterAll(async () => {
    await admin.unsafe(`drop schema if exists ${schema} cascade`);
    await admin.unsafe(`drop schema if exists edgecache_${schema} cascade`);
    await admin.end();
  });

  it("installs the schema's triggers, says so, and uninstalls them", async () => {
    expect(JSON.parse(await cli("status", "--json"))).toMatchObject({ installed: false });
    expect(await cli("install")).toMatch(/tables: {2}items/);
    expect(JSON.parse(await cli("status", "--json"))).toMatchObject({
      installed: true,
      tables: ["items"],
    });
    await admin.unsafe(`insert into ${schema}.items values (1)`);
    const [row] = await admin.unsafe(`select count(*)::int as n from edgecache_${schema}.changes`);
    expect(row!.n).toBe(1);
    await cli("uninstall");
    expect(JSON.parse(await cli("status", "--json"))).toMatchObject({ installed: false });
  });

  it("refuses --schema with a SQLite file", async () => {
    const run = edgecache(["capture", "status", "--db", "nope.db", "--schema", "x"]);
    await expect(run).rejects.toMatchObject({ stderr: expect.stringMatching(/--schema/) });
  });
});
