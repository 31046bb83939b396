/**
 * The permission refusals of the device commands (`drover.cmd.<device>.<command>`),
 * run both against the real `auth init`/`device add` JWTs
 * (security_permissions_test.ts) and against the plain-config mirror of the
 * same layout (security_commands_test.ts): the operator's identity asks any
 * device; a device receives only its own commands, cannot publish on
 * `drover.cmd.>` at all (so it cannot ask another device anything), and can
 * answer only a request it received, once.
 *
 * @module
 */

import type { Msg, NatsConnection } from "@nats-io/transport-node";
import { deviceCommandsSubject, deviceCommandSubject } from "@drover/contracts";
import { TIMED_OUT, withinMs } from "@drover/common";
import { waitFor } from "../support/mod.ts";
import { assert, assertEquals, assertStringIncludes } from "../support/assert.ts";

const enc = (v: unknown) => new TextEncoder().encode(JSON.stringify(v));
const dec = (b: Uint8Array) => new TextDecoder().decode(b);

/** Collects the asynchronous errors (publish refusals) a connection reports. */
function errorsOf(nc: NatsConnection): string[] {
  const errors: string[] = [];
  void (async () => {
    for await (const s of nc.status()) {
      if (s.type === "error") errors.push(String((s.error as Error)?.message ?? s.error));
    }
  })();
  return errors;
}

async function refusedSubscribe(nc: NatsConnection, subject: string): Promise<void> {
  const sub = nc.subscribe(subject, { max: 1 });
  const result = await withinMs(
    (async () => {
      for await (const _ of sub) return "message";
      return "ended";
    })().catch((e) => (e as Error).message),
    10_000,
  );
  assert(result !== TIMED_OUT, `subscribe ${subject}: neither allowed nor refused`);
  assertStringIncludes(String(result), "Permissions Violation", `subscribe ${subject}`);
}

async function refusedPublish(
  nc: NatsConnection,
  errors: string[],
  subject: string,
  data: Uint8Array,
): Promise<void> {
  const before = errors.length;
  nc.publish(subject, data);
  await waitFor(
    () =>
      errors.slice(before).some((e) => e.includes("Permissions Violation") && e.includes(subject)),
    { timeoutMs: 10_000, message: `publishing on ${subject} refused` },
  );
}

/** Runs every refusal; `op` is in DROVER, `a` and `b` are devices "a" and "b". */
export async function commandRefusals(
  op: NatsConnection,
  a: NatsConnection,
  b: NatsConnection,
): Promise<void> {
  const aErrors = errorsOf(a);
  const bErrors = errorsOf(b);
  // Device a answers its own commands (positive control).
  const aSub = a.subscribe(deviceCommandsSubject("a"), {
    callback: (_err, msg) => void msg.respond(enc({ from: "a" })),
  });
  // Device b holds its requests, to show that nobody else can answer them.
  const held: Msg[] = [];
  const bSub = b.subscribe(deviceCommandsSubject("b"), {
    callback: (_err, msg) => void held.push(msg),
  });
  await a.flush();
  await b.flush();

  // The operator's identity asks any device, across the accounts.
  const answer = await op.request(deviceCommandSubject("a", "ping"), enc({}), { timeout: 5_000 });
  assertEquals(JSON.parse(dec(answer.data)), { from: "a" });

  // A device never publishes on drover.cmd.>: it cannot ask another device (or itself).
  await refusedPublish(a, aErrors, deviceCommandSubject("b", "logs"), enc({}));
  await refusedPublish(a, aErrors, deviceCommandSubject("a", "ping"), enc({}));
  assertEquals(held.length, 0, "b never saw a's request");

  // It cannot subscribe to another device's commands, nor to all of them.
  await refusedSubscribe(a, deviceCommandsSubject("b"));
  await refusedSubscribe(a, "drover.cmd.>");

  // It cannot answer a request it did not receive: b's request's reply subject is b's alone.
  const pending = op.request(deviceCommandSubject("b", "ping"), enc({}), { timeout: 8_000 });
  await waitFor(() => held.length === 1, { timeoutMs: 5_000, message: "b received the request" });
  const [request] = held;
  assert(request !== undefined, "b received the request");
  const reply = request.reply;
  assert(reply !== undefined && reply !== "", "the request carries a reply subject");
  await refusedPublish(a, aErrors, reply, enc({ from: "a, forged" }));
  // Nor any reply-looking subject of its own choosing.
  await refusedPublish(a, aErrors, "_R_.forged.x", enc({ from: "a, forged" }));
  // b answers; the operator gets b's answer, never a's forgery.
  request.respond(enc({ from: "b" }));
  assertEquals(JSON.parse(dec((await pending).data)), { from: "b" });
  // One answer per request: a second one on the same reply subject is refused.
  await refusedPublish(b, bErrors, reply, enc({ from: "b, again" }));

  assert(!a.isClosed() && !b.isClosed(), "refusals leave the connections up");
  aSub.unsubscribe();
  bSub.unsubscribe();
}
