/**
 * Configs and secrets through a real podman service (4.3, and 5.4 in the
 * trixie pass): values sealed to this device's key arrive in the container
 * as files and env; a new secret version or config content replaces only
 * the containers that mount it and its old podman secret goes; a device
 * without a key, or given a value sealed to another device, refuses the
 * deployment with the reason and starts nothing; a removed deployment takes
 * its podman secrets with it.
 */

import { AgentPolicy, DesiredState, type SealedSecret } from "@drover/contracts";
import { createSealingKey, sealTo } from "@drover/common";
import type { KeyPair } from "@nats-io/nkeys";
import { assert, assertEquals, assertStringIncludes } from "../../tests/support/assert.ts";
import {
  buildBusyboxImage,
  type PodmanService,
  startPodman,
  waitFor,
} from "../../tests/support/mod.ts";
import { PodmanRuntime } from "../runtime/podman_runtime.ts";
import type { DesiredEntry } from "./desired.ts";
import { Reconciler } from "./reconciler.ts";

const TAG = "localhost/drover/busybox:files-test";
const TIMEOUT_MS = 30_000;
const OPERATOR = createSealingKey();

function sealed(name: string, version: number, value: string, to: KeyPair): SealedSecret {
  return {
    name,
    version,
    sealed: sealTo(OPERATOR, to.getPublicKey(), new TextEncoder().encode(value)),
    sender: OPERATOR.getPublicKey(),
    recipient: to.getPublicKey(),
  };
}

function entry(
  revision: number,
  image: string,
  config: string,
  secrets: SealedSecret[],
): DesiredEntry {
  const state = DesiredState.parse({
    deployment: "app",
    score: {
      type: "PodmanV0",
      services: [
        {
          name: "main",
          image,
          command: [
            "sh",
            "-c",
            'echo "token=$(cat /run/secrets/token) env=$TOKEN conf=$(cat /etc/app.conf) ' +
            'modes=$(stat -c %a /run/secrets/token /etc/app.conf | tr "\\n" ,)"; sleep 3600',
          ],
          secrets: ["token", { source: "token", type: "env", target: "TOKEN" }],
          configs: [{ source: "conf", target: "/etc/app.conf" }],
        },
        { name: "side", image, command: ["sleep", "3600"] },
      ],
      configs: { conf: { content: config } },
    },
    secrets,
  });
  return { kind: "valid", deployment: "app", revision, state };
}

async function lastLine(podman: PodmanService, name: string): Promise<string | undefined> {
  const out = await podman.cli(["logs", name]);
  return out.code === 0 ? out.stdout.trim().split("\n").at(-1) : undefined;
}

async function ids(podman: PodmanService): Promise<Record<string, string>> {
  const out = await podman.cli(["ps", "-a", "--format", "{{.Names}} {{.ID}}"]);
  return Object.fromEntries(out.stdout.trim().split("\n").filter(Boolean).map((l) => l.split(" ")));
}

async function podmanSecrets(podman: PodmanService): Promise<string[]> {
  const out = await podman.cli(["secret", "ls", "--format", "{{.Name}}"]);
  assertEquals(out.code, 0, out.stderr);
  return out.stdout.split("\n").filter(Boolean).sort();
}

async function withReconciler(
  sealingKey: KeyPair | undefined,
  body: (podman: PodmanService, image: string, reconciler: Reconciler) => Promise<void>,
): Promise<void> {
  await using podman = await startPodman();
  const image = await buildBusyboxImage(podman, TAG);
  using runtime = new PodmanRuntime({ socketPath: podman.socket, stopTimeoutSeconds: 0 });
  const reconciler = new Reconciler({
    deviceId: "pi-1",
    runtime,
    policy: AgentPolicy.parse({}),
    registries: {},
    resyncIntervalMs: 10 * 60_000,
    backoff: { baseMs: 100, capMs: 500, jitter: 0 },
    ...(sealingKey !== undefined ? { sealingKey } : {}),
  });
  const ac = new AbortController();
  const running = reconciler.run(ac.signal);
  try {
    await body(podman, image, reconciler);
  } finally {
    ac.abort();
    await running;
  }
}

Deno.test("files on real podman: secrets and configs arrive, rotate, and go with the deployment", async () => {
  const device = createSealingKey();
  await withReconciler(device, async (podman, image, reconciler) => {
    reconciler.setSnapshot({
      entries: new Map([["app", entry(1, image, "a=1", [sealed("token", 1, "t-one", device)])]]),
      authoritative: true,
    });
    await waitFor(
      async () =>
        (await lastLine(podman, "app_main")) === "token=t-one env=t-one conf=a=1 modes=400,444,",
      { timeoutMs: TIMEOUT_MS, message: "the container reads the secret, env and config" },
    );
    assertEquals(await podmanSecrets(podman), [
      `drover_pi-1_app_config_conf_${await hashPrefix(podman, "app_main")}`,
      "drover_pi-1_app_secret_token_v1",
    ]);
    // Both created (main may print before side exists).
    const before = await waitFor(async () => {
      const now = await ids(podman);
      return now.app_main !== undefined && now.app_side !== undefined ? now : undefined;
    }, { timeoutMs: TIMEOUT_MS, message: "both containers exist" });

    // A new secret version: only `main` is replaced; its old podman secret goes.
    reconciler.setDesired("app", entry(2, image, "a=1", [sealed("token", 2, "t-two", device)]));
    await waitFor(
      async () => (await lastLine(podman, "app_main"))?.startsWith("token=t-two env=t-two"),
      {
        timeoutMs: TIMEOUT_MS,
        message: "main runs the new version",
      },
    );
    await waitFor(
      async () => !(await podmanSecrets(podman)).includes("drover_pi-1_app_secret_token_v1"),
      { timeoutMs: TIMEOUT_MS, message: "the old version's podman secret is removed" },
    );
    const after = await ids(podman);
    assertEquals(after.app_side, before.app_side, "side mounts nothing: kept");
    assert(after.app_main !== before.app_main, "main was replaced");

    // A config change likewise.
    reconciler.setDesired("app", entry(3, image, "a=2", [sealed("token", 2, "t-two", device)]));
    await waitFor(async () => (await lastLine(podman, "app_main"))?.includes("conf=a=2"), {
      timeoutMs: TIMEOUT_MS,
      message: "main runs the new config",
    });
    assertEquals((await ids(podman)).app_side, before.app_side);
    await waitFor(async () => (await podmanSecrets(podman)).length === 2, {
      timeoutMs: TIMEOUT_MS,
      message: "one config and one secret left",
    });

    // Removed: containers and podman secrets go.
    reconciler.setSnapshot({ entries: new Map(), authoritative: true });
    await waitFor(async () => (await podmanSecrets(podman)).length === 0, {
      timeoutMs: TIMEOUT_MS,
      message: "the deployment's podman secrets are removed with it",
    });
    assertEquals(Object.keys(await ids(podman)), []);
  });
});

Deno.test("files on real podman: no key, or a value sealed to another device, is refused with the reason", async () => {
  const other = createSealingKey();
  const device = createSealingKey();
  for (
    const [key, expected] of [
      [undefined, "this device has no sealing key"],
      [device, `was sealed to key ${other.getPublicKey()}, not this device's`],
    ] as const
  ) {
    await withReconciler(key, async (podman, image, reconciler) => {
      reconciler.setSnapshot({
        entries: new Map([["app", entry(1, image, "a=1", [sealed("token", 1, "x", other)])]]),
        authoritative: true,
      });
      await reconciler.firstPass;
      const status = await waitFor(() => {
        const s = reconciler.deploymentStatuses().app;
        return s?.phase === "failed" ? s : undefined;
      }, { timeoutMs: TIMEOUT_MS, message: "the deployment is refused" });
      assertStringIncludes(status.message ?? "", expected);
      assertEquals(Object.keys(await ids(podman)), [], "nothing was started");
      assertEquals(await podmanSecrets(podman), [], "no podman secret was created");
    });
  }
});

Deno.test("files on real podman: a service running as a numeric user owns its secret files", async () => {
  const device = createSealingKey();
  await withReconciler(device, async (podman, image, reconciler) => {
    const reader = (name: string, user: string, ref: Record<string, unknown>) => ({
      name,
      image,
      user,
      command: [
        "sh",
        "-c",
        'echo "$(id -u) $(stat -c %u:%g:%a /run/secrets/token) $(cat /run/secrets/token || ' +
        'echo denied)"; sleep 3600',
      ],
      secrets: [{ source: "token", ...ref }],
    });
    const state = DesiredState.parse({
      deployment: "app",
      score: {
        type: "PodmanV0",
        services: [
          reader("own", "1000:1001", {}),
          reader("named", "1000", { uid: "2000", gid: 2000, mode: "0440" }),
          // The control: root keeps the file, and uid 1000 cannot read a 0400 file it does not own.
          reader("root", "1000", { uid: 0 }),
        ],
      },
      secrets: [sealed("token", 1, "t-one", device)],
    });
    reconciler.setSnapshot({
      entries: new Map([["app", { kind: "valid", deployment: "app", revision: 1, state }]]),
      authoritative: true,
    });
    const lines = await waitFor(async () => {
      const out = await Promise.all(
        ["own", "named", "root"].map((s) => lastLine(podman, `app_${s}`)),
      );
      return out.every((l) => l !== undefined && l !== "") ? out : undefined;
    }, { timeoutMs: TIMEOUT_MS, message: "the three services report" });
    assertEquals(lines, [
      "1000 1000:1001:400 t-one",
      "1000 2000:2000:440 denied",
      "1000 0:0:400 denied",
    ]);
  });
});

/** The 16 hex characters of the spec hash the config's podman secret is named after. */
async function hashPrefix(podman: PodmanService, container: string): Promise<string> {
  const out = await podman.cli([
    "inspect",
    "--format",
    '{{index .Config.Labels "drover.spec-hash"}}',
    container,
  ]);
  return out.stdout.trim().slice(0, 16);
}
