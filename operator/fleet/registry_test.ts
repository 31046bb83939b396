import { connect } from "@nats-io/transport-node";
import { decodeJson, DeviceRegistration } from "@drover/contracts";
import { startNats } from "../../tests/support/mod.ts";
import { assert, assertEquals, assertRejects, assertThrows } from "../../tests/support/assert.ts";
import { ensureBuckets } from "../nats/kv.ts";
import {
  applyLabelEdits,
  InvalidLabelError,
  InvalidRegistrationError,
  labelDevice,
  parseLabelEdits,
  readRegistration,
  registerDevice,
  UnknownDeviceError,
  unregisterDevice,
} from "./registry.ts";

Deno.test("parseLabelEdits: KEY=VALUE sets, KEY- removes, kubectl style", () => {
  assertEquals(parseLabelEdits(["site=lab", "arch-", "example.com/tier=", "zone-"]), {
    set: { site: "lab", "example.com/tier": "" },
    remove: ["arch", "zone"],
  });
});

Deno.test("parseLabelEdits: bad arguments are refused, naming the argument", () => {
  const cases: [string[], string][] = [
    [["site"], '"site": expected KEY=VALUE'],
    [["=lab"], '"=lab": expected KEY=VALUE'],
    [["-"], '"-": expected KEY=VALUE'],
    [["site=lab", "site-"], '"site-": "site" given twice'],
    [["bad key=1"], '"bad key=1"'],
    [["-x-"], '"-x-"'],
    [["site=a b"], "site"],
  ];
  for (const [args, message] of cases) {
    const e = assertThrows(() => parseLabelEdits(args), InvalidLabelError);
    assert(e.message.includes(message), `${JSON.stringify(args)}: ${e.message}`);
  }
});

Deno.test("applyLabelEdits: sets, overwrites and removes; sorted; input untouched", () => {
  const before = { site: "lab", arch: "arm64" };
  const after = applyLabelEdits(before, {
    set: { site: "home", zone: "a" },
    remove: ["arch", "x"],
  });
  assertEquals(after, { site: "home", zone: "a" });
  assertEquals(Object.keys(after), ["site", "zone"]);
  assertEquals(before, { site: "lab", arch: "arm64" });
});

Deno.test("registry: register, label, unregister against a real nats-server", async () => {
  await using nats = await startNats();
  const nc = await connect({ servers: nats.url });
  try {
    const kv = (await ensureBuckets(nc)).devices;
    const at = () => new Date("2026-12-01T12:00:00Z");

    // label on a device with no entry is refused (a typo registers no phantom device) …
    await assertRejects(
      () => labelDevice(kv, "pi-1", parseLabelEdits(["site=lab"]), at),
      UnknownDeviceError,
      'No such device "pi-1"',
    );
    assertEquals(await kv.get("pi-1"), null, "nothing was written");
    // … unless it is asked to create it (`device register`).
    const created = await labelDevice(kv, "pi-1", parseLabelEdits(["site=lab"]), at, {
      create: true,
    });
    assertEquals([created.created, created.changed, created.labels], [true, true, {
      site: "lab",
    }]);
    const stored = await kv.get("pi-1");
    const decoded = decodeJson(DeviceRegistration, stored!.value);
    assert(decoded.ok);
    assertEquals(decoded.value, {
      labels: { site: "lab" },
      updated_at: "2026-12-01T12:00:00.000Z",
    });

    // A no-op edit writes nothing.
    const same = await labelDevice(kv, "pi-1", parseLabelEdits(["site=lab", "arch-"]));
    assertEquals([same.changed, same.revision], [false, created.revision]);

    const edited = await labelDevice(kv, "pi-1", parseLabelEdits(["arch=arm64", "site-"]));
    assertEquals([edited.created, edited.changed, edited.labels], [false, true, {
      arch: "arm64",
    }]);
    assertEquals((await readRegistration(kv, "pi-1"))?.registration.labels, { arch: "arm64" });

    // register sets exactly the given labels.
    const registered = await registerDevice(kv, "pi-1", { site: "home" });
    assertEquals(registered.labels, { site: "home" });
    await assertRejects(() => registerDevice(kv, "pi-1", { "-x": "1" }), InvalidLabelError);

    // Unregister; then registering creates the entry again (over the delete marker).
    assertEquals(await unregisterDevice(kv, "pi-1"), true);
    assertEquals(await unregisterDevice(kv, "pi-1"), false);
    assertEquals(await readRegistration(kv, "pi-1"), undefined);
    await assertRejects(
      () => labelDevice(kv, "pi-1", parseLabelEdits(["site=lab"])),
      UnknownDeviceError,
    );
    const again = await labelDevice(kv, "pi-1", parseLabelEdits(["site=lab"]), undefined, {
      create: true,
    });
    assertEquals([again.created, again.labels], [true, { site: "lab" }]);

    // An invalid stored value is not edited blindly; register replaces it.
    await kv.put("pi-2", "{not json");
    await assertRejects(
      () => labelDevice(kv, "pi-2", parseLabelEdits(["site=lab"])),
      InvalidRegistrationError,
      'device "pi-2"',
    );
    assertEquals((await registerDevice(kv, "pi-2", { site: "lab" })).labels, { site: "lab" });
  } finally {
    await nc.close();
  }
});

Deno.test("registry: concurrent label edits of one device both land (compare-and-set)", async () => {
  await using nats = await startNats();
  const nc = await connect({ servers: nats.url });
  try {
    const kv = (await ensureBuckets(nc)).devices;
    await registerDevice(kv, "pi-1", {});
    const edits = Array.from({ length: 4 }, (_, i) => parseLabelEdits([`k${i}=v`]));
    await Promise.all(edits.map((e) => labelDevice(kv, "pi-1", e)));
    assertEquals((await readRegistration(kv, "pi-1"))?.registration.labels, {
      k0: "v",
      k1: "v",
      k2: "v",
      k3: "v",
    });
  } finally {
    await nc.close();
  }
});
