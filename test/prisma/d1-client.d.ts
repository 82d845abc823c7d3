// The Prisma client generated from schema.d1.prisma for workerd (client.ts generates it into
// .scratch/, never committed): test/prisma/d1-worker.ts bundles it under this name.
declare module "edgecache-test:prisma-d1-client" {
  // biome-ignore lint/suspicious/noExplicitAny: the generated client's types exist only once generated.
  export const PrismaClient: new (options: { adapter: unknown }) => any;
}
