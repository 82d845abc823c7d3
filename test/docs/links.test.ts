import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, relative, resolve } from "node:path";
import { afterAll, describe, expect, it } from "vitest";

// Every relative link in README.md and docs/ must lead somewhere: the README was split into
// pages by topic, and a page moved or a heading renamed would otherwise leave links that
// only a reader finds broken.

const ROOT = resolve(import.meta.dirname, "../..");

/** README.md and every Markdown file under docs/, as paths from `root`. */
function markdownFiles(root: string): string[] {
  const docs = join(root, "docs");
  const pages = existsSync(docs)
    ? readdirSync(docs, { recursive: true, encoding: "utf8" })
        .filter((f) => f.endsWith(".md"))
        .map((f) => join("docs", f))
    : [];
  return ["README.md", ...pages.sort()];
}

/** The lines outside fenced code blocks (``` or ~~~). */
function outsideFences(markdown: string): string[] {
  const out: string[] = [];
  let fence: string | undefined;
  for (const line of markdown.split("\n")) {
    const opener = /^\s*(`{3,}|~{3,})/.exec(line)?.[1];
    if (fence !== undefined) {
      if (opener?.startsWith(fence)) fence = undefined;
    } else if (opener !== undefined) {
      fence = opener;
    } else {
      out.push(line);
    }
  }
  return out;
}

/** The lines outside fenced code blocks, with inline code spans blanked. */
function prose(markdown: string): string[] {
  return outsideFences(markdown).map((line) => line.replace(/(`+)[^`]*?\1/g, ""));
}

/** Targets of inline links and images, `[text](target)`, and of `[label]: target` lines. */
function linksOf(markdown: string): string[] {
  const links: string[] = [];
  for (const line of prose(markdown)) {
    for (const m of line.matchAll(/\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)/g)) links.push(m[1]!);
    const definition = /^\s{0,3}\[[^\]]+\]:\s*<?([^\s>]+)/.exec(line);
    if (definition) links.push(definition[1]!);
  }
  return links;
}

/**
 * GitHub's anchor for a heading: its text as rendered, lowercased, punctuation dropped
 * (letters, digits, `_`, `-` and spaces stay), each space a `-`; a repeated heading gets
 * `-1`, `-2`, ...
 */
function anchorsOf(markdown: string): Set<string> {
  const anchors = new Set<string>();
  const seen = new Map<string, number>();
  for (const line of outsideFences(markdown)) {
    const heading = /^\s{0,3}#{1,6}\s+(.*?)\s*#*\s*$/.exec(line)?.[1];
    if (heading === undefined) continue;
    const text = heading
      .replace(/!?\[([^\]]*)\]\([^)]*\)/g, "$1") // a link or image: its text
      .replace(/<[^>]+>/g, ""); // inline HTML
    const slug = text
      .toLowerCase()
      .replace(/[^\p{L}\p{M}\p{N}\s_-]/gu, "")
      .replace(/\s/g, "-");
    const n = seen.get(slug) ?? 0;
    seen.set(slug, n + 1);
    anchors.add(n === 0 ? slug : `${slug}-${n}`);
  }
  return anchors;
}

/** `file: target (why)` for each relative link of `file` (a path from `root`) that leads nowhere. */
function brokenLinks(root: string, file: string): string[] {
  const broken: string[] = [];
  const source = readFileSync(join(root, file), "utf8");
  for (const link of linksOf(source)) {
    if (/^[a-z][a-z0-9+.-]*:/i.test(link)) continue; // https:, mailto:: not ours to check
    const hash = link.indexOf("#");
    const path = decodeURIComponent(hash === -1 ? link : link.slice(0, hash));
    const anchor = hash === -1 ? undefined : decodeURIComponent(link.slice(hash + 1));
    const target = path === "" ? join(root, file) : resolve(root, dirname(file), path);
    if (relative(root, target).startsWith("..")) {
      broken.push(`${file}: ${link} (outside the repository)`);
    } else if (!existsSync(target)) {
      broken.push(`${file}: ${link} (no such file)`);
    } else if (anchor !== undefined && target.endsWith(".md")) {
      if (!anchorsOf(readFileSync(target, "utf8")).has(anchor)) {
        broken.push(`${file}: ${link} (no heading #${anchor})`);
      }
    }
  }
  return broken;
}

describe("documentation links", () => {
  const scratch = mkdtempSync(join(tmpdir(), "edgecache-links-"));
  afterAll(() => rmSync(scratch, { recursive: true, force: true }));

  it("finds a link to a missing file or heading, outside code", () => {
    writeFileSync(
      join(scratch, "README.md"),
      [
        "# Top",
        "## The data API, in short",
        "## The data API, in short",
        "[ok](README.md#the-data-api-in-short) [ok too](#the-data-api-in-short-1) [site](https://x.y/z)",
        "[gone](docs/gone.md) [no heading](README.md#nowhere) ![img](missing.png)",
        "`[code](not-a-link.md)`",
        "```",
        "[fenced](also-not-a-link.md)",
        "```",
        "[label]: ./gone-too.md",
      ].join("\n"),
    );
    expect(brokenLinks(scratch, "README.md")).toEqual([
      "README.md: docs/gone.md (no such file)",
      "README.md: README.md#nowhere (no heading #nowhere)",
      "README.md: missing.png (no such file)",
      "README.md: ./gone-too.md (no such file)",
    ]);
  });

  it("makes GitHub's anchors: lowercase, spaces to '-', punctuation dropped", () => {
    const anchors = anchorsOf("## `E_BAD_QUERY`: 400\n### Proxy mode (RFC 9111)\n# Many nodes");
    expect([...anchors]).toEqual(["e_bad_query-400", "proxy-mode-rfc-9111", "many-nodes"]);
  });

  it("every relative link in README.md and docs/ leads to a file, and a #heading to a heading", () => {
    const files = markdownFiles(ROOT);
    expect(files).toContain("docs/README.md");
    expect(files.flatMap((f) => brokenLinks(ROOT, f))).toEqual([]);
  });
});
