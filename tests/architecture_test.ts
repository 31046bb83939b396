/**
 * The architecture, checked: the layering STYLE.md asks for holds in the
 * code, and no module imports itself through a cycle. Static analysis of the
 * import specifiers of every non-test module of the three members.
 */

import { assertEquals } from "./support/assert.ts";

const ROOT = new URL("../", import.meta.url);
const MEMBERS = ["contracts", "agent", "operator"] as const;
type Member = typeof MEMBERS[number];

interface Module {
  /** Path relative to the repository root, e.g. `agent/main.ts`. */
  path: string;
  member: Member;
  source: string;
  /** Import and re-export specifiers, as written. */
  specifiers: string[];
}

const IMPORT =
  /\b(?:import|export)\b[^;"'`]*?\bfrom\s*["']([^"']+)["']|\bimport\s*\(?\s*["']([^"']+)["']/g;
/(?:^|\n)\s*(?:import|export)\s[^;]*?from\s+["']([^"']+)["']|import\(\s*["']([^"']+)["']\s*\)/g;

async function* walk(dir: string): AsyncGenerator<string> {
  for await (const entry of Deno.readDir(new URL(dir, ROOT))) {
    const path = `${dir}/${entry.name}`;
    if (entry.isDirectory) yield* walk(path);
    else if (entry.name.endsWith(".ts") && !entry.name.endsWith("_test.ts")) yield path;
  }
}

async function loadModules(): Promise<Module[]> {
  const modules: Module[] = [];
  for (const member of MEMBERS) {
    for await (const path of walk(member)) {
      // Test-only helpers may reach the shared test harness.
      if (path.includes("/testing/")) continue;
      const source = await Deno.readTextFile(new URL(path, ROOT));
      const specifiers = [...source.matchAll(IMPORT)].map((m) => m[1] ?? m[2]);
      modules.push({ path, member, source, specifiers });
    }
  }
  return modules;
}

/** Resolves a relative specifier against the importing module's path. */
function resolve(from: string, specifier: string): string {
  return new URL(specifier, new URL(from, "file:///")).pathname.slice(1);
}

const modules = await loadModules();

Deno.test("contracts depends on zod only and uses no Deno API", () => {
  const problems: string[] = [];
  for (const m of modules.filter((m) => m.member === "contracts")) {
    if (m.path === "contracts/gen_schema.ts") continue; // the script that writes schema/
    for (const s of m.specifiers) {
      if (s !== "zod" && !(s.startsWith("./") && resolve(m.path, s).startsWith("contracts/"))) {
        problems.push(`${m.path} imports ${s}`);
      }
    }
    if (/\bDeno\./.test(m.source.replace(/\/\/.*|\/\*[\s\S]*?\*\//g, ""))) {
      problems.push(`${m.path} uses the Deno namespace`);
    }
  }
  assertEquals(problems, []);
});

Deno.test("agent and operator never import each other, and reach contracts by name only", () => {
  const problems: string[] = [];
  for (const m of modules.filter((m) => m.member !== "contracts")) {
    for (const s of m.specifiers) {
      if (!s.startsWith(".")) {
        if (s.startsWith("@drover/") && s !== "@drover/contracts") {
          problems.push(`${m.path} imports ${s}`);
        }
        continue;
      }
      const target = resolve(m.path, s);
      if (!target.startsWith(`${m.member}/`)) problems.push(`${m.path} imports ${s} (${target})`);
    }
  }
  assertEquals(problems, []);
});

Deno.test("no import cycles within a member", () => {
  const graph = new Map<string, string[]>();
  for (const m of modules) {
    graph.set(
      m.path,
      m.specifiers.filter((s) => s.startsWith(".")).map((s) => resolve(m.path, s)),
    );
  }
  const cycles: string[] = [];
  const state = new Map<string, "visiting" | "done">();
  const stack: string[] = [];
  const visit = (node: string) => {
    state.set(node, "visiting");
    stack.push(node);
    for (const next of graph.get(node) ?? []) {
      if (state.get(next) === "visiting") {
        cycles.push([...stack.slice(stack.indexOf(next)), next].join(" → "));
      } else if (!state.has(next)) visit(next);
    }
    stack.pop();
    state.set(node, "done");
  };
  for (const node of [...graph.keys()].sort()) if (!state.has(node)) visit(node);
  assertEquals(cycles, []);
});
