import { assertEquals } from "../tests/support/assert.ts";
import { tolerateTransportResets } from "./transport_resets.ts";

Deno.test("tolerateTransportResets swallows only the transport's resets, until removed", () => {
  const target = new EventTarget();
  const nodeError = (code: string) =>
    Object.assign(new Error(code), { code, stack: `Error: ${code}\n    at ext:deno_node/net` });
  const prevented = (error: unknown) => {
    const event = new ErrorEvent("error", { error, cancelable: true });
    target.dispatchEvent(event);
    return event.defaultPrevented;
  };
  const remove = tolerateTransportResets(target);
  assertEquals(prevented(nodeError("ECONNRESET")), true);
  assertEquals(prevented(nodeError("EPIPE")), true);
  assertEquals(prevented(Object.assign(new Error("reset"), { code: "ECONNRESET" })), false);
  assertEquals(prevented(new TypeError("a real bug")), false);
  remove();
  assertEquals(prevented(nodeError("ECONNRESET")), false);
});
