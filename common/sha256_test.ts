import { assertEquals } from "../tests/support/assert.ts";
import { sha256Hex } from "./sha256.ts";

async function webCrypto(bytes: Uint8Array<ArrayBuffer>): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  return [...digest].map((b) => b.toString(16).padStart(2, "0")).join("");
}

Deno.test("sha256Hex: the FIPS 180-4 examples", () => {
  assertEquals(sha256Hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  assertEquals(
    sha256Hex("abc"),
    "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
  );
  assertEquals(
    sha256Hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
    "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1",
  );
});

Deno.test("sha256Hex equals WebCrypto at every padding boundary, for text and bytes", async () => {
  for (const length of [1, 55, 56, 57, 63, 64, 65, 119, 120, 127, 128, 129, 1000, 70_000]) {
    const bytes = new Uint8Array(length).map((_, i) => (i * 131 + length) & 0xff);
    assertEquals(sha256Hex(bytes), await webCrypto(bytes), `${length} bytes`);
    const text = "é€😀x".repeat(length % 97 + 1);
    assertEquals(
      sha256Hex(text),
      await webCrypto(new TextEncoder().encode(text)),
      `text ${length}`,
    );
  }
});
