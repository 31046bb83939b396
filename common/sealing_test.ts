import { assert, assertEquals } from "../tests/support/assert.ts";
import {
  createSealingKey,
  openFrom,
  SEALING_PUBLIC_KEY,
  sealingKeyFromSeed,
  sealingSeedText,
  sealTo,
} from "./mod.ts";

const text = (s: string) => new TextEncoder().encode(s);

Deno.test("sealing: only the recipient opens, only from the named sender, and nothing changed", () => {
  const operator = createSealingKey();
  const deviceA = createSealingKey();
  const deviceB = createSealingKey();
  assert(SEALING_PUBLIC_KEY.test(deviceA.getPublicKey()), deviceA.getPublicKey());
  const sealed = sealTo(operator, deviceA.getPublicKey(), text("hunter2"));
  assert(!atob(sealed).includes("hunter2"), "the sealed form does not contain the value");
  // Positive control: the device it was sealed to opens it.
  assertEquals(openFrom(deviceA, operator.getPublicKey(), sealed), text("hunter2"));
  // Another device's key does not.
  assertEquals(openFrom(deviceB, operator.getPublicKey(), sealed), undefined);
  // Nor from another sender, nor a changed byte, nor garbage.
  assertEquals(openFrom(deviceA, deviceB.getPublicKey(), sealed), undefined);
  const bytes = Uint8Array.fromBase64(sealed);
  bytes[bytes.length - 1]! ^= 1;
  assertEquals(openFrom(deviceA, operator.getPublicKey(), bytes.toBase64()), undefined);
  assertEquals(openFrom(deviceA, operator.getPublicKey(), "not base64!"), undefined);
  // Two seals of one value differ (random nonce).
  assert(
    sealTo(operator, deviceA.getPublicKey(), text("x")) !==
      sealTo(operator, deviceA.getPublicKey(), text("x")),
  );
});

Deno.test("sealing: a key survives its seed file", () => {
  const key = createSealingKey();
  const again = sealingKeyFromSeed(`${sealingSeedText(key)}\n`);
  assertEquals(again.getPublicKey(), key.getPublicKey());
});
