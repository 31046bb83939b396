import { Kvm } from "@nats-io/kv";
import { connect } from "@nats-io/transport-node";
import { BUCKET_DEPLOYMENTS, BUCKET_SECRETS, DeploymentManifest } from "@drover/contracts";
import { startNats, tempDir } from "../../tests/support/mod.ts";
import { operatorTaskArgs } from "../../tests/support/operator_process.ts";
import { assert, assertEquals, assertStringIncludes } from "../../tests/support/assert.ts";
import { main } from "../main.ts";
import { captureIo } from "./_capture_io.ts";
import { openSecretsBucket, openVersion, readSecret, readSecretsKey } from "../secrets/store.ts";

async function run(args: string[], env: Record<string, string>) {
  const c = captureIo(env);
  const code = await main(args, c.io);
  return { code, out: c.out(), err: c.err() };
}

Deno.test("secret set|list|delete: versions, pinned by apply, rolled into deployments, never shown", async () => {
  await using nats = await startNats();
  await using dir = await tempDir("drover-secret-cli-");
  const env = { NATS_URL: nats.url, DROVER_AUTH_DIR: dir.path };
  const cli = (...args: string[]) => run(args, env);
  const plaintext = `pw-${crypto.randomUUID()}`;
  const valueFile = `${dir.path}/value`;
  await Deno.writeTextFile(valueFile, plaintext);

  // Refusals, before anything is stored.
  assertEquals((await cli("secret", "set", "Bad_Name", "--from-literal", "x")).code, 3);
  const both = await cli("secret", "set", "db", "--from-literal", "x", "--from-file", valueFile);
  assertEquals(both.code, 2, both.err);
  assertEquals((await cli("secret", "set", "db", "--from-literal", "")).code, 3);

  const set1 = await cli("secret", "set", "db", "--from-file", valueFile);
  assertEquals([set1.code, set1.out], [0, 'secret "db" set (version 1)\n'], set1.err);
  assertEquals((await Deno.stat(`${dir.path}/secrets.xk`)).mode! & 0o777, 0o600);
  const again = await cli("secret", "set", "db", "--from-file", valueFile);
  assertEquals(again.out, 'secret "db" unchanged (version 1)\n');

  // apply: a missing secret refuses the set (exit 3, nothing stored) naming the command; a known
  // one is pinned.
  const manifest = (secret: string) => ({
    name: "app",
    selector: { labels: {} },
    score: { type: "PodmanV0", services: [{ name: "web", image: "busybox:1", secrets: [secret] }] },
  });
  const file = `${dir.path}/app.json`;
  await Deno.writeTextFile(file, JSON.stringify(manifest("nope")));
  const missing = await cli("apply", "-f", file);
  assertEquals(missing.code, 3, missing.err);
  assertStringIncludes(missing.err, "operator secret set nope --from-file FILE");
  await Deno.writeTextFile(file, JSON.stringify(manifest("db")));
  assertEquals((await cli("apply", "-f", file)).out, 'deployment "app" created (revision 1)\n');

  // A new version: a new revision of the deployment, named in the history.
  const set2 = await cli("secret", "set", "db", "--from-literal", `${plaintext}-2`);
  assertStringIncludes(set2.out, 'secret "db" set (version 2)');
  assertStringIncludes(set2.out, 'deployment "app" revision 2: secret db v2');
  assertStringIncludes((await cli("history", "app")).out, "secret db v2");
  // Re-applying the same file pins the same (current) version: unchanged.
  assertEquals((await cli("apply", "-f", file)).out, 'deployment "app" unchanged (revision 2)\n');

  const list = await cli("secret", "list", "-o", "json");
  assertEquals(
    JSON.parse(list.out).map((s: Record<string, unknown>) => [s.name, s.version, s.used_by]),
    [
      ["db", 2, ["app"]],
    ],
  );
  const table = await cli("secret", "list");
  assertStringIncludes(table.out, "NAME  VERSION  UPDATED");

  // Stored only sealed; the manifest carries the version.
  const nc = await connect({ servers: nats.url });
  try {
    const kvm = new Kvm(nc);
    const stored = await (await kvm.open(BUCKET_SECRETS)).get("db");
    assert(stored !== null && !stored.string().includes(plaintext), "sealed at rest");
    assert(!stored.string().includes(btoa(plaintext)), "not merely encoded");
    const app = await (await kvm.open(BUCKET_DEPLOYMENTS)).get("app");
    assertEquals(DeploymentManifest.parse(app?.json()).secret_versions, { db: 2 });
  } finally {
    await nc.close();
  }
  for (const output of [set1, again, set2, list, table]) {
    assert(!(output.out + output.err).includes(plaintext), "never printed");
  }

  // In use: delete is refused naming the deployment; afterwards it goes.
  const refused = await cli("secret", "delete", "db");
  assertEquals(refused.code, 1);
  assertStringIncludes(refused.err, "deployment(s) app use it");
  assertEquals((await cli("delete", "app")).code, 0);
  assertEquals((await cli("secret", "delete", "db")).out, 'secret "db" deleted\n');
  assertStringIncludes((await cli("secret", "list")).out, "No secrets");
  assertEquals((await cli("secret", "delete", "db")).code, 1);
});

Deno.test("secret set --from-file - reads the value from standard input, as the operator task runs it", async () => {
  await using nats = await startNats();
  await using dir = await tempDir("drover-secret-stdin-");
  const plaintext = `line one\nline two ${crypto.randomUUID()}\n`;
  const child = new Deno.Command(Deno.execPath(), {
    args: [...await operatorTaskArgs(), "secret", "set", "tls-key", "--from-file", "-"],
    env: { NATS_URL: nats.url, DROVER_AUTH_DIR: dir.path },
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const writer = child.stdin.getWriter();
  await writer.write(new TextEncoder().encode(plaintext));
  await writer.close();
  const { code, stdout, stderr } = await child.output();
  const text = new TextDecoder().decode(stdout) + new TextDecoder().decode(stderr);
  assertEquals(code, 0, text);
  assertStringIncludes(text, 'secret "tls-key" set (version 1)');
  // The bytes as given (newlines kept): the store opens to exactly them.
  const nc = await connect({ servers: nats.url });
  try {
    const stored = await readSecret(await openSecretsBucket(nc), "tls-key");
    const key = await readSecretsKey(dir.path);
    assert(stored !== undefined && key !== undefined);
    const opened = openVersion(stored.record, key, 1);
    assertEquals(opened && new TextDecoder().decode(opened), plaintext);
  } finally {
    await nc.close();
  }
});
