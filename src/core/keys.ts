/**
 * The cache key of a GET request: method, path and the query parameters sorted, so that
 * `?b=2&a=1` and `?a=1&b=2` share an entry. The host is not part of it (one data API).
 */
export function requestKey(pathname: string, search: string): string {
  if (search.length <= 1) return `GET ${pathname}`;
  const params = new URLSearchParams(search);
  params.sort();
  const query = params.toString();
  return query ? `GET ${pathname}?${query}` : `GET ${pathname}`;
}

/** The path and query a key was made from (for refetching it). */
export function keyPath(key: string): string | undefined {
  return key.startsWith("GET ") ? key.slice(4) : undefined;
}
