/**
 * The architecture, checked: the layering docs/architecture.md describes holds
 * in the code, and no module imports itself through a cycle. Static analysis of
 * the import specifiers of every non-test module of the four members.
 *
 * Who may import whom (by name, never by a `../` path across members):
 * - contracts (the wire contract): zod only;
 * - common (small async helpers): nothing at all, but for the one package named in
 *   COMMON_MAY_IMPORT;
 * - agent and operator: contracts and common, never each other.
 *
 * Inside the operator, folders follow what flows through them (manifest →
 * fan-out → desired state → fleet picture → views); see OPERATOR_MAY_IMPORT.
 */

import { assertEquals } from "./support/assert.ts";

const ROOT = new URL("../", import.meta.url);
const MEMBERS = ["contracts", "common", "agent", "operator"] as const;
/** The workspace members each member may import by name (`@drover/<name>`). */
const MAY_IMPORT: Record<Member, readonly Member[]> = {
  contracts: [],
  common: [],
  agent: ["contracts", "common"],
  operator: ["contracts", "common"],
};
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

/** Comments taken out: an import in an example or `Deno.` in prose is not a use. */
function withoutComments(source: string): string {
  return source.replace(/\/\*[\s\S]*?\*\/|(?<![:"'])\/\/.*/g, "");
}

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
      const source = await Deno.readTextFile(new URL(path, ROOT));
      // Imports in doc comments (`@example` blocks) are not the module's own.
      const specifiers = [...withoutComments(source).matchAll(IMPORT)].flatMap((m) =>
        m[1] ?? m[2] ?? []
      );
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
    if (/\bDeno\./.test(withoutComments(m.source))) {
      problems.push(`${m.path} uses the Deno namespace`);
    }
  }
  assertEquals(problems, []);
});

/**
 * Packages single common modules may import, and why. Sealing secrets to a device's xkey must be
 * one copy that the operator (seals) and the agent (opens) share; nkeys (in deno.lock already, pure
 * JavaScript, no Deno API) holds the X25519 + XSalsa20-Poly1305 box it uses.
 */
const COMMON_MAY_IMPORT: Record<string, readonly string[]> = {
  "common/sealing.ts": ["@nats-io/nkeys"],
};

Deno.test("common depends on nothing and uses no Deno API", () => {
  const problems: string[] = [];
  for (const m of modules.filter((m) => m.member === "common")) {
    for (const s of m.specifiers) {
      if ((COMMON_MAY_IMPORT[m.path] ?? []).includes(s)) continue;
      if (!(s.startsWith("./") && resolve(m.path, s).startsWith("common/"))) {
        problems.push(`${m.path} imports ${s}`);
      }
    }
    if (/\bDeno\./.test(withoutComments(m.source))) {
      problems.push(`${m.path} uses the Deno namespace`);
    }
  }
  assertEquals(problems, []);
});

Deno.test("members import only the members they may, by name, and never agent↔operator", () => {
  const problems: string[] = [];
  for (const m of modules) {
    for (const s of m.specifiers) {
      if (!s.startsWith(".")) {
        const named = /^@drover\/([^/]+)/.exec(s)?.[1];
        if (named !== undefined && !MAY_IMPORT[m.member].some((allowed) => allowed === named)) {
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

/**
 * The operator's folders and the other folders each may import: only folders listed above it
 * (docs/architecture.md lists them in this order). `commands/` (the CLI and `serve`, the composition
 * root) may use everything; nothing below it uses the CLI, and command modules never import
 * each other (shared pieces live in `_shared.ts`, `_wait.ts`, `_device.ts`, …).
 */
const OPERATOR_MAY_IMPORT: Record<string, readonly string[]> = {
  // KV, leases, the connection: facts about NATS.
  nats: [],
  // Signing keys and device credentials.
  auth: [],
  // The secret store: each version sealed to the operator's key, kept with its other keys.
  secrets: ["nats", "auth"],
  // Fan-out and targeting (pure); the fan-out loop keeps the fleet picture and drives rollouts
  // (MODULE_MAY_IMPORT); each device's copy gets the store's secrets sealed to its key.
  desired: ["nats", "secrets"],
  // The fleet picture: decoded buckets, per-device and per-deployment views.
  fleet: ["nats", "desired"],
  // Text for people: tables, ages, escaping.
  views: ["fleet"],
  // Staged rollouts: plan (pure), driver, store, history, views.
  rollout: ["nats", "desired", "fleet", "views"],
  // Reading manifest files and sets, and planning a set against what is stored (which devices
  // each targets, the history's change summaries).
  manifests: ["desired", "rollout"],
  // What devices ask of the operator and it of them.
  devices: ["nats", "auth", "fleet", "views"],
  // HTTP API, metrics, dashboard.
  api: ["fleet", "devices"],
  commands: [
    "nats",
    "auth",
    "secrets",
    "manifests",
    "desired",
    "fleet",
    "rollout",
    "devices",
    "views",
    "api",
  ],
};

/** Single modules allowed more than their folder, and why. */
const MODULE_MAY_IMPORT: Record<string, readonly string[]> = {
  // The level-triggered loop: mirrors the buckets into the fleet picture, advances rollouts.
  "operator/desired/fanout_controller.ts": ["fleet", "rollout"],
  // A deployment is judged by its rollout (rolled back: at the stable revision; staged: devices
  // not reached yet are held). Types only: the states come in through a RolloutLookup.
  "operator/fleet/aggregate.ts": ["rollout"],
  // The CLI's one read of the whole picture includes the rollout states and earlier manifests
  // that picture is judged by.
  "operator/fleet/read.ts": ["rollout"],
  // drover_rollout_state has one series per rollout state: the states' one list.
  "operator/api/metrics.ts": ["rollout"],
};

/** The operator's top level keeps only its entry point and what every folder may share. */
const OPERATOR_TOP_LEVEL = ["operator/log.ts", "operator/main.ts", "operator/version.ts"];

Deno.test("operator folders import only the folders below them; commands never each other", () => {
  const problems: string[] = [];
  for (const m of modules.filter((m) => m.member === "operator")) {
    const [, folder] = m.path.split("/");
    if (folder === undefined) continue;
    const isTopLevel = m.path.split("/").length === 2;
    if (isTopLevel) {
      if (!OPERATOR_TOP_LEVEL.includes(m.path)) problems.push(`${m.path} at the top level`);
      continue;
    }
    const allowed = OPERATOR_MAY_IMPORT[folder];
    if (allowed === undefined) {
      problems.push(`${m.path}: folder ${folder} has no rule in OPERATOR_MAY_IMPORT`);
      continue;
    }
    for (const s of m.specifiers.filter((s) => s.startsWith("."))) {
      const target = resolve(m.path, s);
      const parts = target.split("/");
      if (parts.length === 2) {
        // The top level's shared modules (log, version) but never the entry point.
        if (target === "operator/main.ts") problems.push(`${m.path} imports ${target}`);
        continue;
      }
      const to = parts[1] ?? "";
      if (to === folder) {
        const base = parts.at(-1) ?? "";
        // Command modules share through the `_`-prefixed helpers, cli.ts and friends only.
        if (
          folder === "commands" && m.path !== "operator/commands/mod.ts" &&
          COMMAND_MODULES.has(base)
        ) problems.push(`${m.path} imports the command module ${target}`);
        continue;
      }
      if (!allowed.includes(to) && !(MODULE_MAY_IMPORT[m.path] ?? []).includes(to)) {
        problems.push(`${m.path} imports ${target} (${folder} → ${to})`);
      }
    }
  }
  assertEquals(problems, []);
});

/** The modules under operator/commands/ that define a command (`export const …Command`). */
const COMMAND_MODULES = new Set(
  modules.filter((m) =>
    m.path.startsWith("operator/commands/") && /export const \w+Command\b/.test(m.source)
  ).map((m) => m.path.split("/").at(-1) ?? ""),
);

Deno.test("the operator layering check knows the command modules it guards", () => {
  for (const name of ["apply.ts", "rollout.ts", "history.ts", "logs.ts", "agent.ts", "serve.ts"]) {
    assertEquals(COMMAND_MODULES.has(name), true, name);
  }
  assertEquals(COMMAND_MODULES.has("_shared.ts"), false);
});

Deno.test("the architecture check sees every workspace member", async () => {
  const root = JSON.parse(await Deno.readTextFile(new URL("deno.json", ROOT))) as {
    workspace: string[];
  };
  assertEquals(root.workspace.map((w) => w.replace(/^\.\//, "")).sort(), [...MEMBERS].sort());
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
