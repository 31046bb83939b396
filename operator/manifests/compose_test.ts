import { parse } from "yaml";
import { z } from "zod";
import { DeploymentManifest } from "@drover/contracts";
import { assert, assertEquals, assertStringIncludes } from "../../tests/support/assert.ts";
import {
  commandLine,
  configFiles,
  convertCompose,
  type ConvertOptions,
  interpolate,
  parseDotEnv,
} from "./compose.ts";

const examples = new URL("../../examples/compose/", import.meta.url);

function convert(yaml: string, options: Partial<ConvertOptions> = {}) {
  const vars: Record<string, string> = {};
  return convertCompose(parse(yaml, { merge: true }), {
    file: "docker-compose.yml",
    fallbackName: "app",
    variable: (name) => vars[name],
    ...options,
  });
}

/** The warning about `key`, or a failure listing them all. */
function warningOf(warnings: readonly string[], key: string): string {
  const found = warnings.find((w) => w.startsWith(`${key}: `));
  assert(found !== undefined, `no warning about ${key} in:\n${warnings.join("\n")}`);
  return found;
}

Deno.test("interpolate: compose's forms, $$ escapes, unset variables collected", () => {
  const vars: Record<string, string> = { A: "1", EMPTY: "" };
  const unset = new Set<string>();
  const at = (text: string) => interpolate(text, (n) => vars[n], unset);
  assertEquals(at("${A}-$A"), "1-1");
  assertEquals(at("${B:-two}"), "two");
  assertEquals(at("${EMPTY:-d}|${EMPTY-d}|${B-d}"), "d||d");
  assertEquals(at("${B:-${A}}"), "1", "a default may itself interpolate");
  assertEquals(at("$$HOME costs $$5"), "$HOME costs $5");
  assertEquals(at("x${NOPE}y"), "xy");
  assertEquals([...unset], ["NOPE"]);
});

Deno.test("parseDotEnv: comments, export, quotes", () => {
  assertEquals(
    parseDotEnv(
      "# comment\nexport A=1\nB = two words # note\nC=\"quoted # not a comment\"\nD='lit $X'\n\nbad line\n",
    ),
    { A: "1", B: "two words", C: "quoted # not a comment", D: "lit $X" },
  );
});

Deno.test("commandLine: a string splits like a shell; a list stays", () => {
  assertEquals(commandLine(`sh -c 'echo "a b"; exit 0'`), ["sh", "-c", 'echo "a b"; exit 0']);
  assertEquals(commandLine('echo "x\\"y" z\\ w ""'), ["echo", 'x"y', "z w", ""]);
  assertEquals(commandLine(["a", 1]), ["a", "1"]);
  assertEquals(commandLine({}), undefined);
});

Deno.test("environment and labels in both forms; version ignored; x- keys ignored", () => {
  const list = convert(`
version: "3"
x-common: &common { restart: always }
services:
  web:
    image: busybox:1
    environment: [A=1, "B=x=y", FROM_SHELL]
    labels: { team: edge }
    command: httpd -f -p 80
  worker:
    image: busybox:1
    environment: { A: 1, B: true, C: null }
    labels: ["tier=back"]
    <<: *common
`);
  const services = list.manifest?.score.services ?? [];
  assertEquals(services[0]?.env, { A: "1", B: "x=y" });
  assertEquals(services[0]?.labels, { team: "edge" });
  assertEquals(services[0]?.command, ["httpd", "-f", "-p", "80"]);
  assertEquals(services[1]?.env, { A: "1", B: "true" });
  assertEquals(services[1]?.labels, { tier: "back" });
  assertEquals(services[1]?.restart, "always");
  assertStringIncludes(warningOf(list.warnings, "services.web.environment.FROM_SHELL"), "no value");
  assertStringIncludes(warningOf(list.warnings, "services.worker.environment.C"), "no value");
  assert(!list.warnings.some((w) => w.startsWith("version") || w.startsWith("x-common")));
});

Deno.test("every key that cannot be carried is a warning naming it and why", () => {
  const result = convert(`
services:
  app:
    image: busybox:1
    build: .
    extends: { service: base }
    network_mode: "service:vpn"
    volumes: ["./data:/data", "~/cfg:/cfg", "/anon", "named:/named"]
    networks:
      front: { ipv4_address: 10.0.0.5, aliases: [www] }
    privileged: true
    ports: ["8000-8010:8000-8010", "80:80"]
  builder:
    build: ./builder
networks:
  front: {}
  back:
    ipam: { config: [{ subnet: 10.0.0.0/24 }] }
secrets:
  token: { file: ./token.txt }
`);
  const w = result.warnings;
  assertStringIncludes(warningOf(w, "services.app.build"), "devices do not build images");
  assertStringIncludes(warningOf(w, "services.app.extends"), "not supported");
  assertStringIncludes(warningOf(w, "services.app.network_mode"), '"service:vpn" is not supported');
  assertStringIncludes(warningOf(w, "services.app.volumes[0]"), 'relative bind mount "./data"');
  assertStringIncludes(warningOf(w, "services.app.volumes[1]"), 'relative bind mount "~/cfg"');
  assertStringIncludes(warningOf(w, "services.app.volumes[2]"), "anonymous volume");
  assertStringIncludes(warningOf(w, "services.app.networks.front.ipv4_address"), "static");
  assertStringIncludes(warningOf(w, "services.app.privileged"), "refused");
  assertStringIncludes(warningOf(w, "services.app.ports[0]"), "port range");
  assertStringIncludes(warningOf(w, "services.builder"), "build: but no image:");
  assertStringIncludes(warningOf(w, "networks"), "front, back are merged");
  assertStringIncludes(warningOf(w, "networks.back.ipam"), "static subnets");
  assertStringIncludes(
    warningOf(w, "secrets.token"),
    "`drover-operator secret set token --from-file ./token.txt`",
  );
  const [app] = result.manifest?.score.services ?? [];
  assertEquals(app?.volumes, ["named:/named"]);
  assertEquals(app?.ports, ["80:80"]);
  assertEquals(result.manifest?.score.services.length, 1);
});

Deno.test("nothing usable remains: no manifest, and the reason", () => {
  const result = convert("services:\n  app:\n    build: .\n");
  assertEquals(result.manifest, undefined);
  assertStringIncludes(warningOf(result.warnings, "services"), "nothing usable remains");
  assertEquals(convert("just: text").manifest, undefined);
});

Deno.test("a value the schema refuses is left out with its key named; the rest stays", () => {
  const result = convert(`
services:
  web:
    image: busybox:1
    mem_limit: 1k
    cap_add: [SUPERPOWER]
    depends_on: [gone]
`);
  const [web] = result.manifest?.score.services ?? [];
  assertEquals(web?.mem_limit, undefined);
  assertEquals(web?.cap_add, undefined);
  assertEquals(web?.depends_on, []);
  assertStringIncludes(warningOf(result.warnings, "services.web.mem_limit"), "below the minimum");
  assertStringIncludes(warningOf(result.warnings, "services.web.cap_add[0]"), "SUPERPOWER");
  assertStringIncludes(warningOf(result.warnings, "services.web.depends_on.gone"), "left out");
});

Deno.test("names become Drover names; depends_on follows the renames", () => {
  const result = convert(
    `
name: My_Shop
services:
  Web_App:
    image: busybox:1
    depends_on: { db_main: { condition: service_started } }
  db_main: { image: busybox:1 }
`,
    { selector: { site: "home" } },
  );
  assertEquals(result.manifest?.name, "my-shop");
  assertEquals(result.manifest?.selector, { labels: { site: "home" } });
  const [web] = result.manifest?.score.services ?? [];
  assertEquals(web?.name, "web-app");
  assertEquals(web?.depends_on, { "db-main": { condition: "service_started" } });
  assertStringIncludes(warningOf(result.warnings, "services.Web_App"), 'renamed to "web-app"');
});

Deno.test("without --selector the manifest targets no device, and says so", () => {
  const result = convert("services:\n  a: { image: busybox:1 }\n", { name: "x" });
  assertEquals(result.manifest?.selector, { devices: [] });
  assertStringIncludes(warningOf(result.warnings, "--selector"), "targets no device");
});

Deno.test("examples/compose/shop: web + db + migration job converts without a warning", async () => {
  const text = await Deno.readTextFile(new URL("shop/docker-compose.yml", examples));
  const result = convert(text, { selector: { site: "home" }, fallbackName: "shop" });
  assertEquals(result.warnings, []);
  const manifest = DeploymentManifest.parse(result.manifest);
  assertEquals(manifest.name, "shop");
  const byName = new Map(manifest.score.services.map((s) => [s.name, s]));
  assertEquals(byName.get("migrate")?.restart, "no");
  assertEquals(
    byName.get("migrate")?.command?.[2],
    "echo v1 > /var/lib/db/schema && echo migrated",
  );
  assertEquals(byName.get("web")?.depends_on, {
    migrate: { condition: "service_completed_successfully" },
  });
  assertEquals(byName.get("web")?.ports, ["127.0.0.1:8089:8080"]);
  assertEquals(byName.get("web")?.logging, {
    driver: "json-file",
    options: { "max-size": "1m", "max-file": "3" },
  });
  assertEquals(byName.get("db")?.volumes, ["dbdata:/var/lib/db"]);
  assertEquals(byName.get("db")?.command?.slice(0, 2), ["sh", "-c"]);
});

Deno.test("examples/compose/sensor: the device maps; container_name and static addresses warn", async () => {
  const text = await Deno.readTextFile(new URL("sensor/docker-compose.yml", examples));
  const vars: Record<string, string> = { SENSOR_DEVICE: "/dev/null" };
  const result = convert(text, { variable: (n) => vars[n], fallbackName: "sensor" });
  const [reader] = result.manifest?.score.services ?? [];
  assertEquals(reader?.devices, ["/dev/null:/dev/sensor:rw"]);
  assertEquals(reader?.cap_drop, ["ALL"]);
  assertEquals(reader?.user, "0:20");
  warningOf(result.warnings, "services.reader.container_name");
  warningOf(result.warnings, "services.reader.networks.sensors.ipv4_address");
  warningOf(result.warnings, "networks.sensors.ipam");
});

Deno.test("examples/compose/dashboard: configs from a file, long-form ports, log options", async () => {
  const text = await Deno.readTextFile(new URL("dashboard/docker-compose.yml", examples));
  const doc = parse(text);
  assertEquals(configFiles(doc), ["./index.html"]);
  const page = await Deno.readTextFile(new URL("dashboard/index.html", examples));
  const result = convertCompose(doc, {
    file: "docker-compose.yml",
    fallbackName: "dashboard",
    variable: () => undefined,
    files: new Map([["./index.html", page]]),
  });
  warningOf(result.warnings, "services.dashboard.build");
  const [dashboard] = result.manifest?.score.services ?? [];
  assertEquals(dashboard?.ports, ["127.0.0.1:8090:8080"]);
  assertEquals(dashboard?.logging, { options: { "max-size": "2m" } });
  assertEquals(dashboard?.working_dir, "/etc/dashboard");
  assertEquals(result.manifest?.score.configs, { page: { content: page } });
  assertEquals(dashboard?.configs, [
    { source: "page", target: "/etc/dashboard/index.html", mode: "0444" },
  ]);
  DeploymentManifest.parse(result.manifest);
});

Deno.test("secret and config references keep compose's uid, gid and mode", () => {
  const result = convert(`
services:
  db:
    image: postgres:16
    user: postgres
    secrets:
      - source: password
        target: pg.pass
        uid: "999"
        gid: 999
        mode: 0440
      - { source: other, uid: postgres }
secrets:
  password: { external: true }
  other: { external: true }
`);
  const [db] = result.manifest?.score.services ?? [];
  assertEquals(db?.secrets, [
    { source: "password", target: "pg.pass", mode: "0440", uid: "999", gid: "999" },
    { source: "other" },
  ]);
  assertStringIncludes(warningOf(result.warnings, "services.db.secrets[1].uid"), "numeric id");
  DeploymentManifest.parse(result.manifest);
});

Deno.test("every example's manifest validates against the published JSON Schema", async () => {
  const schemaFile = new URL(
    "../../contracts/schema/deployment-manifest.schema.json",
    import.meta.url,
  );
  // zod reads the JSON Schema file itself: the check is against what clients in other languages get.
  const published = z.fromJSONSchema(JSON.parse(await Deno.readTextFile(schemaFile)));
  for (const example of ["shop", "sensor", "dashboard"]) {
    const text = await Deno.readTextFile(new URL(`${example}/docker-compose.yml`, examples));
    const { manifest } = convert(text, { fallbackName: example, selector: { site: "lab" } });
    const result = published.safeParse(manifest);
    assert(result.success, `${example}: ${JSON.stringify(result.error?.issues)}`);
  }
  // Negative control: the schema does refuse what a manifest may not say.
  const text = await Deno.readTextFile(new URL("shop/docker-compose.yml", examples));
  const { manifest } = convert(text, { fallbackName: "shop" });
  const broken = structuredClone(manifest) as { score: { services: Record<string, unknown>[] } };
  broken.score.services[0]!.privileged = true;
  assertEquals(published.safeParse(broken).success, false);
});

Deno.test("an unknown key is named with a did-you-mean", () => {
  const result = convert(
    "servces: {}\nservices:\n  web:\n    image: busybox:1\n    enviroment: [A=1]\n",
  );
  assertEquals(
    warningOf(result.warnings, "services.web.enviroment"),
    'services.web.enviroment: unknown key, ignored; did you mean "environment"?',
  );
  assertStringIncludes(warningOf(result.warnings, "servces"), 'did you mean "services"?');
  assertEquals(result.manifest?.score.services[0]?.env, undefined);
});
