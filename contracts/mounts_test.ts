import { assert, assertEquals } from "../tests/support/assert.ts";
import {
  configMounts,
  DesiredState,
  formatZodIssues,
  PodmanV0Score,
  secretMounts,
  secretNamesOf,
  serviceHashInput,
  specHash,
} from "./mod.ts";

const base = { name: "web", image: "busybox:1" };
const root = { uid: 0, gid: 0 };

Deno.test("configs and secrets: compose's defaults for target and mode", () => {
  assertEquals(configMounts({ configs: ["app", { source: "b", target: "/etc/b.conf" }] }), [
    { kind: "config", source: "app", type: "file", target: "/app", mode: 0o444, ...root },
    { kind: "config", source: "b", type: "file", target: "/etc/b.conf", mode: 0o444, ...root },
  ]);
  assertEquals(
    secretMounts({
      secrets: [
        "db",
        { source: "tls", target: "key.pem", mode: "0440" },
        { source: "api", type: "env", target: "API_KEY" },
      ],
    }),
    [
      {
        kind: "secret",
        source: "db",
        type: "file",
        target: "/run/secrets/db",
        mode: 0o400,
        ...root,
      },
      {
        kind: "secret",
        source: "tls",
        type: "file",
        target: "/run/secrets/key.pem",
        mode: 0o440,
        ...root,
      },
      { kind: "secret", source: "api", type: "env", target: "API_KEY" },
    ],
  );
  assertEquals(
    secretNamesOf({ services: [{ secrets: ["b", "a"] }, { secrets: [{ source: "a" }] }] }),
    ["a", "b"],
  );
});

Deno.test("configs and secrets: owned by the service's numeric user unless uid/gid say", () => {
  const owners = (service: Parameters<typeof secretMounts>[0]) =>
    [...configMounts(service), ...secretMounts(service)].map((m) =>
      m.type === "file" ? [m.uid, m.gid] : "env"
    );
  const refs = {
    configs: ["c"],
    secrets: ["s", { source: "t", uid: "103", gid: 7 }, {
      source: "e",
      type: "env" as const,
      target: "E",
    }],
  };
  assertEquals(owners({ ...refs, user: "1000:1001" }), [
    [1000, 1001],
    [1000, 1001],
    [103, 7],
    "env",
  ]);
  assertEquals(owners({ ...refs, user: "1000" }), [[1000, 0], [1000, 0], [103, 7], "env"]);
  // A name is resolved in the image, which the device does not read: root unless uid/gid say.
  assertEquals(owners({ ...refs, user: "postgres" }), [[0, 0], [0, 0], [103, 7], "env"]);
  assertEquals(owners(refs), [[0, 0], [0, 0], [103, 7], "env"]);
});

Deno.test("configs and secrets: mistakes are refused, naming the field", () => {
  const cases: [unknown, string][] = [
    [{ services: [{ ...base, configs: ["missing"] }] }, 'config "missing" is not defined'],
    [{ services: [{ ...base, secrets: [{ source: "x", type: "env" }] }] }, "needs target"],
    [{ services: [{ ...base, secrets: [{ source: "x", target: "../etc" }] }] }, "file name"],
    [{ services: [{ ...base, secrets: ["Bad_Name"] }] }, "invalid name"],
    [{ services: [{ ...base, secrets: [{ source: "x", mode: "777x" }] }] }, "octal"],
    [{ services: [{ ...base, secrets: [{ source: "x", uid: "root" }] }] }, "numeric id"],
    [{ services: [{ ...base, secrets: [{ source: "x", gid: -1 }] }] }, "secrets[0].gid"],
    [
      { services: [{ ...base, secrets: [{ source: "x", type: "env", target: "X", uid: "1" }] }] },
      "an env secret has no uid",
    ],
    [
      {
        services: [{ ...base, configs: [{ source: "a", target: "rel" }] }],
        configs: { a: { content: "" } },
      },
      "absolute path",
    ],
    [
      { services: [{ ...base, secrets: ["a", { source: "b", target: "/run/secrets/a" }] }] },
      "both mount at /run/secrets/a",
    ],
    [{ services: [base], configs: { a: { content: "x".repeat(65 * 1024) } } }, "at most 65536"],
    [
      {
        services: [base],
        configs: Object.fromEntries(
          ["a", "b", "c", "d", "e"].map((n) => [n, { content: "x".repeat(60 * 1024) }]),
        ),
      },
      "must total at most 262144 bytes",
    ],
  ];
  for (const [score, expected] of cases) {
    const parsed = PodmanV0Score.safeParse({ type: "PodmanV0", ...(score as object) });
    assert(!parsed.success, `accepted ${JSON.stringify(score).slice(0, 200)}`);
    const text = formatZodIssues(parsed.error);
    assert(text.includes(expected), `${text} lacks ${expected}`);
  }
  const ok = PodmanV0Score.safeParse({
    type: "PodmanV0",
    services: [{
      ...base,
      configs: ["app"],
      secrets: ["db", { source: "api", type: "env", target: "API" }],
    }],
    configs: { app: { content: "port=80\n" } },
  });
  assert(ok.success, ok.success ? "" : formatZodIssues(ok.error));
});

Deno.test("spec hash: unchanged without configs and secrets; covers config content and secret version, never a value", async () => {
  // Locked: the hash of a service without the new fields is the hash of the service alone.
  assertEquals(serviceHashInput(base, undefined, new Map()), base);
  const service = { ...base, configs: ["app"], secrets: ["db"] };
  const hash = (content: string, version: number) =>
    specHash(serviceHashInput(service, { app: { content } }, new Map([["db", version]])));
  const h = await hash("a", 1);
  assertEquals(await hash("a", 1), h);
  assert(await hash("b", 1) !== h, "config content enters the hash");
  assert(await hash("a", 2) !== h, "secret version enters the hash");
  // Another config in the score that the service does not mount changes nothing.
  assertEquals(
    await specHash(
      serviceHashInput(
        service,
        { app: { content: "a" }, other: { content: "z" } },
        new Map([["db", 1]]),
      ),
    ),
    h,
  );
});

Deno.test("DesiredState carries sealed secrets (name, version, sealed bytes) and nothing else of them", () => {
  const value = {
    deployment: "app",
    score: { type: "PodmanV0", services: [{ ...base, secrets: ["db"] }] },
    secrets: [{ name: "db", version: 3, sealed: "AAAA", sender: "XA", recipient: "XB" }],
  };
  const parsed = DesiredState.parse(value);
  assertEquals(parsed.secrets, value.secrets);
  // A value field (e.g. a plaintext someone put there) is dropped, not kept.
  const withValue = DesiredState.parse({
    ...value,
    secrets: [{ name: "db", version: 3, value: "hunter2" }],
  });
  assertEquals(withValue.secrets, [{ name: "db", version: 3 }]);
});
