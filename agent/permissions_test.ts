import { parseConfig } from "./config.ts";
import {
  hostPathPermissions,
  missingPermissions,
  natsHostPort,
  notifyPermissions,
  requiredPermissions,
} from "./permissions.ts";
import { assert, assertEquals } from "../tests/support/assert.ts";

Deno.test("natsHostPort handles schemes, default port and bare hosts", () => {
  assertEquals(natsHostPort("nats://127.0.0.1:4222"), "127.0.0.1:4222");
  assertEquals(natsHostPort("tls://nats.example.com"), "nats.example.com:4222");
  assertEquals(natsHostPort("nats.example.com:7422"), "nats.example.com:7422");
});

Deno.test("requiredPermissions lists state dir, podman socket, NATS servers and secret files", () => {
  const config = parseConfig(
    "agent.toml",
    `[agent]
device_id = "pi-1"
state_dir = "/var/lib/drover"
[nats]
servers = ["nats://nats.example.com:4222", "tls://10.0.0.2"]
creds = "/etc/drover/pi-1.creds"
[podman]
socket = "/run/podman/podman.sock"
`,
  );
  const flags = requiredPermissions(config).map((p) => p.flag);
  for (
    const expected of [
      "--allow-read=/var/lib/drover",
      "--allow-write=/var/lib/drover",
      "--allow-read=/run/podman/podman.sock",
      "--allow-write=/run/podman/podman.sock",
      "--allow-net=unix:/run/podman/podman.sock",
      "--allow-net=libpod:80",
      "--allow-net=nats.example.com:4222",
      "--allow-net=10.0.0.2:4222",
      "--allow-read=/etc/drover/pi-1.creds",
    ]
  ) assert(flags.includes(expected), `missing ${expected} in ${flags.join(" ")}`);
});

Deno.test("missingPermissions reports what this process lacks", () => {
  // This test runs with -A: nothing is missing.
  assertEquals(
    missingPermissions(notifyPermissions("/var/lib/drover", "/run/systemd/notify")),
    [],
  );
  assertEquals(notifyPermissions("/var/lib/drover", undefined), []);
});

Deno.test("a narrow process is told exactly which flag to add", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const config = `${dir}/agent.toml`;
    await Deno.writeTextFile(
      config,
      `[agent]\ndevice_id = "pi-1"\nstate_dir = "${dir}/state"\n` +
        `[nats]\nservers = ["nats://nats.example.com:4222"]\n[podman]\nsocket = "${dir}/podman.sock"\n`,
    );
    const main = new URL("./main.ts", import.meta.url).pathname;
    const out = await new Deno.Command(Deno.execPath(), {
      signal: AbortSignal.timeout(30_000),
      args: [
        "run",
        `--allow-read=${dir}`,
        `--allow-write=${dir}`,
        `--allow-net=127.0.0.1,libpod:80,unix:${dir}/podman.sock`,
        main,
        "--config",
        config,
      ],
      stdout: "piped",
      stderr: "piped",
    }).output();
    const stderr = new TextDecoder().decode(out.stderr);
    assertEquals(out.code, 78, stderr);
    assert(stderr.includes("--allow-net=nats.example.com:4222"), stderr);
    assert(!stderr.includes("--allow-read="), stderr);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("hostPathPermissions: read access to every allowed host path, apart from the required", () => {
  const config = parseConfig(
    "agent.toml",
    `[agent]
device_id = "pi-1"
[nats]
servers = ["nats://127.0.0.1:4222"]
[policy]
allowed_host_paths = ["/srv/data", "/mnt/usb"]
`,
  );
  assertEquals(hostPathPermissions(config).map((p) => p.flag), [
    "--allow-read=/srv/data",
    "--allow-read=/mnt/usb",
  ]);
  // Missing, they fail only deployments with bind mounts: the agent still starts.
  const required = requiredPermissions(config).map((p) => p.flag);
  assertEquals(required.includes("--allow-read=/srv/data"), false);
});
