/**
 * A throw-away PKI for TLS tests, made with the real `openssl`: a CA, a server
 * certificate for `127.0.0.1`/`localhost` (as subjectAltName — names in the
 * CN alone are ignored by TLS clients), a client certificate for mutual TLS,
 * and an unrelated second CA to show that trusting the wrong CA fails.
 *
 * @example
 * ```ts
 * await using pki = await createTestPki();
 * await using nats = await startNats({ extraConfig: natsTlsBlock(pki, { verify: true }) });
 * ```
 *
 * @module
 */

import { runChecked } from "./_exec.ts";
import { tempDir } from "./temp_dir.ts";

/** Files of a test PKI; the directory is removed on dispose. */
export interface TestPki extends AsyncDisposable {
  readonly dir: string;
  /** CA certificate (PEM) that signed the server and client certificates. */
  readonly caCert: string;
  readonly serverCert: string;
  readonly serverKey: string;
  /** Client certificate (extendedKeyUsage clientAuth) and key, signed by the CA. */
  readonly clientCert: string;
  readonly clientKey: string;
  /** A CA that signed nothing here: trusting only it must fail. */
  readonly otherCaCert: string;
}

const DAYS = "2";

async function openssl(args: string[], cwd: string): Promise<void> {
  await runChecked("openssl", args, { cwd });
}

/** Creates an EC P-256 key (fast to generate) at `path`. */
async function ecKey(path: string, cwd: string): Promise<void> {
  await openssl(["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", path], cwd);
}

async function selfSignedCa(name: string, cwd: string): Promise<void> {
  await ecKey(`${name}.key`, cwd);
  await openssl([
    "req",
    "-x509",
    "-new",
    "-key",
    `${name}.key`,
    "-sha256",
    "-days",
    DAYS,
    "-subj",
    `/CN=Drover test ${name}`,
    "-addext",
    "basicConstraints=critical,CA:TRUE",
    "-addext",
    "keyUsage=critical,keyCertSign,cRLSign",
    "-out",
    `${name}.pem`,
  ], cwd);
}

async function signedLeaf(
  name: string,
  cn: string,
  extensions: string,
  cwd: string,
): Promise<void> {
  await ecKey(`${name}.key`, cwd);
  await openssl(
    ["req", "-new", "-key", `${name}.key`, "-subj", `/CN=${cn}`, "-out", `${name}.csr`],
    cwd,
  );
  await Deno.writeTextFile(`${cwd}/${name}.ext`, extensions);
  await openssl([
    "x509",
    "-req",
    "-in",
    `${name}.csr`,
    "-CA",
    "ca.pem",
    "-CAkey",
    "ca.key",
    "-CAcreateserial",
    "-sha256",
    "-days",
    DAYS,
    "-extfile",
    `${name}.ext`,
    "-out",
    `${name}.pem`,
  ], cwd);
}

/** Generates the PKI into a fresh temp dir. */
export async function createTestPki(): Promise<TestPki> {
  const dir = await tempDir("drover-pki-");
  try {
    const cwd = dir.path;
    await selfSignedCa("ca", cwd);
    await selfSignedCa("other-ca", cwd);
    await signedLeaf(
      "server",
      "localhost",
      [
        "basicConstraints=CA:FALSE",
        "keyUsage=critical,digitalSignature,keyEncipherment",
        "extendedKeyUsage=serverAuth",
        "subjectAltName=IP:127.0.0.1,DNS:localhost",
        "",
      ].join("\n"),
      cwd,
    );
    await signedLeaf(
      "client",
      "drover-test-client",
      [
        "basicConstraints=CA:FALSE",
        "keyUsage=critical,digitalSignature,keyEncipherment",
        "extendedKeyUsage=clientAuth",
        "",
      ].join("\n"),
      cwd,
    );
    const p = (f: string) => `${cwd}/${f}`;
    return {
      dir: cwd,
      caCert: p("ca.pem"),
      serverCert: p("server.pem"),
      serverKey: p("server.key"),
      clientCert: p("client.pem"),
      clientKey: p("client.key"),
      otherCaCert: p("other-ca.pem"),
      [Symbol.asyncDispose]: () => dir[Symbol.asyncDispose](),
    };
  } catch (e) {
    await dir[Symbol.asyncDispose]();
    throw e;
  }
}

/** Options of {@linkcode natsTlsBlock}. */
export interface NatsTlsOptions {
  /** Require and verify a client certificate signed by the CA (mutual TLS). */
  verify?: boolean;
}

/** A nats-server `tls { … }` block using the PKI's server certificate. */
export function natsTlsBlock(pki: TestPki, options: NatsTlsOptions = {}): string {
  const q = JSON.stringify;
  return [
    "tls {",
    `  cert_file: ${q(pki.serverCert)}`,
    `  key_file: ${q(pki.serverKey)}`,
    `  ca_file: ${q(pki.caCert)}`,
    `  verify: ${options.verify ? "true" : "false"}`,
    "  timeout: 5",
    "}",
    "",
  ].join("\n");
}
