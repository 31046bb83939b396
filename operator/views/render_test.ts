import { assertEquals, assertStringIncludes } from "../../tests/support/assert.ts";
import type { DeploymentView, DeviceView } from "../fleet/aggregate.ts";
import { deploymentStatus, devicesTable, escapeControl, jsonForTerminal, table } from "./render.ts";

/** Any character a terminal would act on rather than print. */
// deno-lint-ignore no-control-regex -- finding control characters is the point
const RAW_CONTROL = /[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e]/;

const HOSTILE = "boom\x1b[2J\r\nfake row\x1b]0;pwned\x07\x9b31m\x7f\u202eevil";

Deno.test("escapeControl: C0, DEL, C1 and bidi controls become visible escapes", () => {
  assertEquals(escapeControl("\x1b[2J\r\n\t"), "\\u001b[2J\\r\\n\\t");
  assertEquals(
    escapeControl("\x00\x07\x7f\x80\x9b\u2028\u202e\u2066"),
    "\\u0000\\u0007\\u007f\\u0080\\u009b\\u2028\\u202e\\u2066",
  );
  // Printable text, backslashes and non-Latin letters are kept.
  for (const text of ["plain text", "C:\\path \\u001b", "ünïcødé 日本 🚀", ""]) {
    assertEquals(escapeControl(text), text);
  }
});

const deployment = (message: string): DeploymentView => ({
  name: "web",
  revision: 7,
  targeted: 2,
  ready: 1,
  failed: 1,
  pending: 0,
  offline: 0,
  devices: [
    {
      device_id: "pi-1",
      online: true,
      wanted_revision: 7,
      applied_revision: 7,
      wanted_kv_revision: 40,
      applied_kv_revision: 40,
      phase: "failed",
      agent_phase: "failed",
      message,
    },
    {
      device_id: "pi-2",
      online: true,
      wanted_revision: 7,
      applied_revision: 7,
      wanted_kv_revision: 40,
      applied_kv_revision: 40,
      phase: "ready",
      agent_phase: "running",
      message: "",
    },
  ],
});

Deno.test("status: a device's message cannot clear the screen, move the cursor or add rows", () => {
  const out = deploymentStatus(deployment(HOSTILE));
  assertEquals(RAW_CONTROL.test(out), false, JSON.stringify(out));
  const lines = out.trimEnd().split("\n");
  // Summary, blank line, header, one row per device: the message's newline made no row.
  assertEquals(lines.length, 5, JSON.stringify(lines));
  assertStringIncludes(lines[3], "boom\\u001b[2J\\r\\nfake row\\u001b]0;pwned\\u0007\\u009b31m");
  assertEquals(lines[4]?.startsWith("pi-2"), true, lines[4]);
});

Deno.test("get devices: reported status, labels and deployment names are escaped", () => {
  const device: DeviceView = {
    device_id: "pi-1",
    labels: { site: "x\x1b[31m" },
    registered: true,
    reported_labels: { site: "\rbank" },
    status: "ready\x1b[2J",
    online: true,
    heartbeat_age_seconds: 3,
    last_seen: null,
    agent_version: "1\x1b",
    deployments: ["web", "evil\ndeploy"],
  };
  const out = devicesTable([device]);
  assertEquals(RAW_CONTROL.test(out), false, JSON.stringify(out));
  assertEquals(out.trimEnd().split("\n").length, 2);
  assertStringIncludes(out, "ready\\u001b[2J");
  assertStringIncludes(out, "site=x\\u001b[31m");
  assertStringIncludes(out, "web,evil\\ndeploy");
});

Deno.test("table: columns line up on the escaped text", () => {
  assertEquals(
    table(["A", "B"], [["\x1b", "x"], ["ab", "y"]]),
    "A       B\n\\u001b  x\nab      y\n",
  );
});

Deno.test("-o json: the same value, with DEL, C1 and bidi controls escaped too", () => {
  const value = deployment(HOSTILE);
  const out = jsonForTerminal(value);
  assertEquals(RAW_CONTROL.test(out), false, JSON.stringify(out));
  assertEquals(JSON.parse(out), value);
  assertStringIncludes(out, "\\u009b31m\\u007f\\u202eevil");
  assertEquals(out.endsWith("}\n"), true);
});

Deno.test("get devices: a not-ready device's reason is shown, escaped, in MESSAGE", () => {
  const device: DeviceView = {
    device_id: "pi-1",
    labels: {},
    registered: true,
    reported_labels: null,
    status: "degraded",
    online: true,
    heartbeat_age_seconds: 3,
    last_seen: null,
    agent_version: "1",
    deployments: [],
    reason: "podman away\x1b[2J\nfake row",
  };
  const { reason: _, ...withoutReason } = device;
  const ready: DeviceView = { ...withoutReason, device_id: "pi-2", status: "ready" };
  const out = devicesTable([device, ready]);
  assertEquals(RAW_CONTROL.test(out), false, JSON.stringify(out));
  const lines = out.trimEnd().split("\n");
  assertEquals(lines.length, 3);
  assertStringIncludes(lines[0], "MESSAGE");
  assertStringIncludes(lines[1], "podman away\\u001b[2J\\nfake row");
  assertEquals(lines[2]?.endsWith(" -"), true, lines[2]);
});

Deno.test("status: the deployment revision heads the report and fills WANTED/APPLIED", () => {
  const view = deployment("x");
  const second = view.devices[1];
  if (second === undefined) throw new Error("the fixture has a second device");
  view.devices[1] = { ...second, applied_revision: 6, applied_kv_revision: 31 };
  const lines = deploymentStatus(view).split("\n");
  assertEquals(lines[0], "Deployment web (revision 7): 1/2 ready, 1 failed");
  // WANTED/APPLIED are deployment revisions; the KV revisions (40, 31) stay in -o json.
  assertEquals(lines[3]?.split(/ +/).slice(0, 4), ["pi-1", "failed", "7", "7"]);
  assertEquals(lines[4]?.split(/ +/).slice(0, 4), ["pi-2", "ready", "7", "6"]);
  assertEquals(/\b(40|31)\b/.test(lines.join("\n")), false);
});

Deno.test("get devices: AGENT shows the release a device runs and where its update stands", async () => {
  const { agentColumn } = await import("./render.ts");
  const base = { agent_version: "0.1.0" };
  assertEquals(agentColumn({ agent_version: null }), "-");
  assertEquals(agentColumn(base), "0.1.0");
  assertEquals(
    agentColumn({ ...base, agent_update: { running: "factory", phase: "idle" } }),
    "0.1.0",
  );
  assertEquals(
    agentColumn({ ...base, agent_update: { running: "1.1.0", phase: "idle" } }),
    "1.1.0",
  );
  assertEquals(
    agentColumn({
      ...base,
      agent_update: {
        running: "1.1.0",
        wanted: "1.2.0",
        phase: "downloading",
        downloaded: 40,
        size: 100,
      },
    }),
    "1.1.0→1.2.0 downloading 40%",
  );
  assertEquals(
    agentColumn({ ...base, agent_update: { running: "1.2.0", wanted: "1.2.0", phase: "trial" } }),
    "1.2.0 trial",
  );
  const failed: DeviceView = {
    device_id: "pi-1",
    labels: {},
    registered: true,
    reported_labels: null,
    status: "ready",
    online: true,
    heartbeat_age_seconds: 1,
    last_seen: null,
    agent_version: "0.1.0",
    deployments: [],
    agent_update: {
      running: "1.1.0",
      wanted: "1.2.0",
      phase: "failed",
      message: "release 1.2.0 was rolled back: crashed\x1b[2J",
    },
  };
  const out = devicesTable([failed]);
  assertEquals(RAW_CONTROL.test(out), false, JSON.stringify(out));
  assertStringIncludes(out, "1.1.0 (1.2.0 failed)");
  assertStringIncludes(out, "agent update: release 1.2.0 was rolled back: crashed\\u001b[2J");
});
