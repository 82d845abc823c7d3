/** Runs `test` on a fixture `make` gives, and closes it whatever the test did. */
export async function withFixture<F extends { close(): Promise<void> }>(
  make: () => Promise<F>,
  test: (fixture: F) => Promise<void>,
): Promise<void> {
  const fixture = await make();
  try {
    await test(fixture);
  } finally {
    await fixture.close();
  }
}
