/**
 * A test Worker's fetch handler around `route`: an error becomes a 500 whose body says what
 * failed and why, so the Node side of the test can show it.
 */
export function answeringErrors<E>(route: (request: Request, env: E) => Promise<Response>): {
  fetch(request: Request, env: E): Promise<Response>;
} {
  return {
    async fetch(request, env) {
      try {
        return await route(request, env);
      } catch (error) {
        const { message, cause } = error as Error;
        return new Response(`${message}: ${String(cause)}`, { status: 500 });
      }
    },
  };
}
