import postgres from "postgres";

/**
 * A PostgreSQL database of its own for one test file, on the shared server: created
 * empty, dropped by `drop` (the connections to it must be closed first). Its name carries
 * the process id, so test files running at once never meet.
 */
export async function withPostgresDatabase<T>(
  serverUrl: string,
  prefix: string,
  use: (url: string, drop: () => Promise<void>) => Promise<T>,
): Promise<T> {
  const name = `${prefix}_${process.pid}_${Math.floor(Math.random() * 1e6)}`;
  const admin = postgres(serverUrl, { max: 1, onnotice: () => {} });
  await admin.unsafe(`CREATE DATABASE ${name}`);
  const url = new URL(serverUrl);
  url.pathname = `/${name}`;
  const drop = async () => {
    await admin.unsafe(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    await admin.end();
  };
  try {
    return await use(url.toString(), drop);
  } catch (error) {
    await drop().catch(() => {});
    throw error;
  }
}
