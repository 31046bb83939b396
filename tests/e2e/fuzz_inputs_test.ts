/**
 * Fuzz: the two files people (or attackers) hand to Drover — deployment
 * manifests through the operator's loader (`apply -f`), and agent.toml through
 * the agent's config loader — with seeded mutations. Every input either
 * parses or fails with the loader's own error class and a message that names
 * the file and the field (or line) at fault; nothing else may be thrown.
 * Replay with the printed seed: `DROVER_FUZZ_SEED=<seed>`.
 */
import { stringify as toYaml } from "yaml";
import { stringify as toToml } from "smol-toml";
import { ManifestError, parseManifest } from "../../operator/manifests/file.ts";
import { ConfigError, parseConfig } from "../../agent/config.ts";
import { assert } from "../support/assert.ts";
import { fuzzSeed, mutate, NASTY_STRINGS, Rng } from "./_fuzz.ts";

const ITERATIONS = 2_000;
/** Each test stops early after this long (the machine is shared); it still needs MIN_ITERATIONS. */
const TIME_BUDGET_MS = 20_000;
const MIN_ITERATIONS = 300;
/** Bigger documents go as JSON: YAML and TOML of megabytes only make the run slow. */
const MAX_TEXT_FORMAT_BYTES = 64 * 1024;
const decoder = new TextDecoder();

const BASE_MANIFEST = {
  name: "web",
  selector: { labels: { site: "lab" }, devices: ["pi-1"] },
  score: {
    type: "PodmanV0",
    services: [{
      name: "web",
      image: "registry.example:5000/web:1.2",
      command: ["httpd", "-f"],
      env: { GREETING: "hi" },
      ports: ["8080:80"],
      volumes: ["data:/data"],
      restart: "always",
      labels: { tier: "front" },
    }],
  },
};

const BASE_CONFIG = {
  agent: {
    device_id: "pi-1",
    state_dir: "/var/lib/drover",
    labels: { site: "lab" },
    heartbeat_seconds: 10,
    log_level: "info",
  },
  nats: { servers: ["nats://127.0.0.1:4222"], creds: "/etc/drover/pi-1.creds" },
  podman: { socket: "/run/podman/podman.sock" },
  registries: { "registry.example:5000": { username: "u", password: "p", tls_verify: true } },
  policy: {
    allowed_registries: ["registry.example:5000"],
    allowed_host_paths: ["/srv"],
    allowed_host_ports: [8080, "9000-9100"],
    max_containers: 10,
  },
};

/** Text-level damage on top of the structural mutations. */
function damageText(rng: Rng, text: string): string {
  switch (rng.int(0, 7)) {
    case 0:
      return text.slice(0, rng.int(0, text.length));
    case 1: {
      const at = rng.int(0, text.length);
      return text.slice(0, at) + rng.pick(NASTY_STRINGS) + text.slice(at);
    }
    case 2:
      return text.replace(/\n/g, rng.pick(["\r\n", "\n\n", "\t\n", "\u2028"]));
    case 3: // YAML alias bomb ("billion laughs")
      return [
        'a: &a ["x","x","x","x","x","x","x","x","x"]',
        "b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]",
        "c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]",
        "d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]",
        "e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]",
        "name: [*e,*e,*e,*e,*e,*e,*e,*e,*e]",
      ].join("\n");
    case 4: // YAML tags, merge keys and prototype keys
      return rng.pick([
        "name: !!js/function 'function(){}'\n",
        "<<: {name: web}\nselector: {devices: [pi-1]}\n",
        "__proto__: {polluted: true}\nname: web\n",
        "name: !!binary aGVsbG8=\n",
        "? [complex, key]\n: value\n",
        "name: &x web\nselector: *x\n",
      ]) + text;
    case 5: // TOML oddities
      return rng.pick([
        "[agent]\n[agent]\n",
        "a = 99999999999999999999999\n",
        'a = """\n',
        "[[agent]]\n",
        "agent = 1\n[agent.x]\n",
        "'__proto__' = { polluted = true }\n",
        "x = 1979-05-27T07:32:00Z\n",
      ]) + text;
    case 6: // duplicate keys
      return text + "\n" + text;
    default:
      return text;
  }
}

function serialise(rng: Rng, doc: unknown, formats: string[]): { text: string; ext: string } {
  const ext = rng.pick(formats);
  const json = JSON.stringify(doc);
  if (json.length > MAX_TEXT_FORMAT_BYTES) return { text: json, ext: "json" };
  try {
    if (ext === "yaml") return { text: toYaml(doc), ext };
    if (ext === "toml") return { text: toToml(doc as Record<string, unknown>), ext };
  } catch {
    // Not representable in that format (e.g. null in TOML): fall back to JSON.
  }
  return { text: json, ext: ext === "toml" ? "toml" : "json" };
}

function mutatedDoc(rng: Rng, base: unknown): unknown {
  const bytes = mutate(rng, base);
  try {
    return JSON.parse(decoder.decode(bytes));
  } catch {
    return decoder.decode(bytes); // broken JSON text is input too
  }
}

Deno.test("fuzz: manifests through the operator's loader fail only with ManifestError naming the field", () => {
  const seed = fuzzSeed();
  console.log(`fuzz seed ${seed} (replay: DROVER_FUZZ_SEED=${seed})`);
  const rng = new Rng(seed);
  let rejected = 0;
  const started = Date.now();
  let i = 0;
  for (; i < ITERATIONS && Date.now() - started < TIME_BUDGET_MS; i++) {
    const doc = mutatedDoc(rng, BASE_MANIFEST);
    const { text, ext } = typeof doc === "string"
      ? { text: doc, ext: rng.pick(["json", "yaml", "toml"]) }
      : serialise(rng, doc, ["json", "yaml", "toml"]);
    const input = rng.chance(0.3) ? damageText(rng, text) : text;
    const file = `fuzz-${i}.${ext}`;
    const t0 = Date.now();
    try {
      parseManifest(input, file);
    } catch (e) {
      if (!(e instanceof ManifestError)) {
        throw new Error(
          `iteration ${i} (seed ${seed}): ${(e as Error)?.name}: ${(e as Error)?.message}\n` +
            `input: ${input.slice(0, 300)}`,
          { cause: e },
        );
      }
      rejected++;
      const all = [e.message, ...e.details].join("\n");
      assert(e.message.startsWith(`Invalid manifest ${file}`), `names the file: ${e.message}`);
      // Either a syntax error with its position, or a field path and problem.
      assert(
        /not valid (YAML|TOML|JSON)/.test(e.message) ||
          /^: (\(root\)|[A-Za-z_[]).*: \S/.test(
            e.message.slice(`Invalid manifest ${file}`.length),
          ) ||
          /more than the \d+ allowed/.test(e.message),
        `iteration ${i} (seed ${seed}): no field named: ${all.slice(0, 500)}`,
      );
      assert(all.length < 20_000, `iteration ${i}: ${all.length}-char message`);
    } finally {
      if (Deno.env.get("DROVER_FUZZ_TRACE") && Date.now() - t0 > 500) {
        console.log(
          `slow ${Date.now() - t0} ms ${file} ${input.length} chars: ${input.slice(0, 150)}`,
        );
      }
    }
  }
  console.log(`manifests: ${i} inputs, ${rejected} rejected, ${Date.now() - started} ms`);
  assert(i >= MIN_ITERATIONS, `only ${i} inputs in the time budget`);
  assert(rejected > i / 2, "most mutations are rejected");
});

Deno.test("fuzz: agent.toml through the agent's config loader fails only with ConfigError naming key or line", () => {
  const seed = fuzzSeed();
  console.log(`fuzz seed ${seed} (replay: DROVER_FUZZ_SEED=${seed})`);
  const rng = new Rng(seed);
  let rejected = 0;
  const started = Date.now();
  let i = 0;
  for (; i < ITERATIONS && Date.now() - started < TIME_BUDGET_MS; i++) {
    const doc = mutatedDoc(rng, BASE_CONFIG);
    const text = typeof doc === "string" ? doc : serialise(rng, doc, ["toml"]).text;
    const input = rng.chance(0.3) ? damageText(rng, text) : text;
    try {
      parseConfig("/etc/drover/agent.toml", input);
    } catch (e) {
      if (!(e instanceof ConfigError)) {
        throw new Error(
          `iteration ${i} (seed ${seed}): ${(e as Error)?.name}: ${(e as Error)?.message}\n` +
            `input: ${input.slice(0, 300)}`,
          { cause: e },
        );
      }
      rejected++;
      assert(e.problems.length > 0, "at least one problem");
      for (const problem of e.problems) {
        assert(
          problem.key !== undefined || problem.line !== undefined ||
            problem.message.startsWith("invalid TOML") || problem.message.startsWith("… and"),
          `iteration ${i} (seed ${seed}): problem names no key or line: ${problem.message}`,
        );
      }
      assert(e.message.includes("/etc/drover/agent.toml"), `names the file: ${e.message}`);
      assert(e.message.length < 20_000, `iteration ${i}: ${e.message.length}-char message`);
    }
  }
  console.log(`agent.toml: ${i} inputs, ${rejected} rejected, ${Date.now() - started} ms`);
  assert(i >= MIN_ITERATIONS, `only ${i} inputs in the time budget`);
  assert(rejected > i / 2, "most mutations are rejected");
});
