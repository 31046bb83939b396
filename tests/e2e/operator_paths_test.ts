/**
 * `deno task operator` runs in the project root; relative paths the user typed must resolve
 * against the directory they typed them in (`INIT_CWD`), for every path-taking option, and
 * errors must show the path that was tried.
 */

import { startNats, tempDir } from "../support/mod.ts";
import { createTestPki, natsTlsBlock } from "../support/tls.ts";
import { assert, assertEquals, assertStringIncludes } from "../support/assert.ts";
import { runOperatorCli } from "../support/operator_process.ts";

const EXAMPLES = new URL("../../examples/", import.meta.url).pathname.replace(/\/$/, "");

const basename = (path: string) => path.slice(path.lastIndexOf("/") + 1);

Deno.test("operator CLI: -f, --creds and --dir resolve against INIT_CWD; errors show the path", async () => {
  await using nats = await startNats();
  await using dir = await tempDir();

  // The case: `cd examples && deno task operator apply -f hello.yaml`.
  const applied = await runOperatorCli(nats.url, ["apply", "-f", "hello.yaml"], {
    INIT_CWD: EXAMPLES,
  });
  assertEquals(applied.code, 0, applied.stderr);
  assertStringIncludes(applied.stdout, 'deployment "hello" created');

  const missing = await runOperatorCli(nats.url, ["apply", "-f", "nope.yaml"], {
    INIT_CWD: dir.path,
  });
  assertEquals(missing.code, 3, missing.stderr);
  assertStringIncludes(missing.stderr, `Cannot read manifest ${dir.path}/nope.yaml:`);

  for (const [args, env] of [[["--creds", "op.creds"], {}], [[], { NATS_CREDS: "op.creds" }]]) {
    const creds = await runOperatorCli(nats.url, ["get", "devices", ...args as string[]], {
      INIT_CWD: dir.path,
      ...env as Record<string, string>,
    });
    assertEquals(creds.code, 1, creds.stderr);
    assertStringIncludes(creds.stderr, `Cannot read credentials file ${dir.path}/op.creds:`);
  }

  const init = await runOperatorCli(nats.url, ["auth", "init", "--dir", "keys"], {
    INIT_CWD: dir.path,
  });
  assertEquals(init.code, 0, init.stderr);
  assert((await Deno.stat(`${dir.path}/keys/operator.creds`)).isFile, "creds under INIT_CWD");
});

Deno.test("operator CLI: --tls-ca/--tls-cert/--tls-key resolve against INIT_CWD", async () => {
  await using pki = await createTestPki();
  await using nats = await startNats({ extraConfig: natsTlsBlock(pki, { verify: true }) });
  const url = nats.url.replace("nats://", "tls://");
  const tls = [
    ["--tls-ca", basename(pki.caCert)],
    ["--tls-cert", basename(pki.clientCert)],
    ["--tls-key", basename(pki.clientKey)],
  ].flat();
  assertEquals(pki.dir, pki.caCert.slice(0, pki.caCert.lastIndexOf("/")));
  const ok = await runOperatorCli(url, ["get", "devices", ...tls], { INIT_CWD: pki.dir });
  assertEquals(ok.code, 0, ok.stderr);
  // Elsewhere the same names do not exist, and the error says which file was tried.
  await using dir = await tempDir();
  const missing = await runOperatorCli(url, ["get", "devices", ...tls], { INIT_CWD: dir.path });
  assertEquals(missing.code, 1, missing.stderr);
  assertStringIncludes(
    missing.stderr,
    `Cannot read TLS CA file ${dir.path}/${basename(pki.caCert)}:`,
  );
});
