// The Prisma client generated from schema.d1.prisma for workerd (test/prisma/client.ts
// generates it into .scratch/, never committed): bench/drizzle-exact/d1.ts bundles it under
// this name.
declare module "edgecache-bench:prisma-d1-client" {
  // biome-ignore lint/suspicious/noExplicitAny: the generated client's types exist only once generated.
  export const PrismaClient: new (options: { adapter: unknown }) => any;
}
