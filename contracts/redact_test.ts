import { assertEquals } from "../tests/support/assert.ts";
import { redactUrl } from "./mod.ts";

Deno.test("redactUrl: hides user:password and tokens in URLs", () => {
  const cases: [string, string][] = [
    ["nats://drover:s3cret@nats.example.com:4222", "nats://***@nats.example.com:4222"],
    ["nats://s3cret-token@host", "nats://***@host"],
    ["tls://u:p@[::1]:4222", "tls://***@[::1]:4222"],
    ["WSS://u:p@host:443/path?x=1", "WSS://***@host:443/path?x=1"],
    // A raw "@" in a password: the userinfo ends at the last one.
    ["nats://u:p@ss@host:4222", "nats://***@host:4222"],
    // A comma in a password must not leave its tail visible.
    ["nats://u:a,b@host", "nats://***@host"],
    // Without a scheme, as the NATS client accepts.
    ["u:s3cret@127.0.0.1:4222", "***@127.0.0.1:4222"],
    ["s3cret@host", "***@host"],
  ];
  for (const [input, expected] of cases) assertEquals(redactUrl(input), expected, input);
});

Deno.test("redactUrl: leaves URLs without credentials and other text alone", () => {
  for (
    const text of [
      "nats://127.0.0.1:4222",
      "127.0.0.1:4222",
      "nats.example.com",
      "",
      "tls://[::1]:4222",
      // "@" after the authority is a path, query or fragment, not a userinfo (image digests).
      "http://libpod/v4.0.0/libpod/images/pull?reference=busybox@sha256:abc",
      "http://host/a@b",
      "http://host#x@y",
      "mail me at ops@example.com please",
      "no url here: a@b c@d",
    ]
  ) {
    assertEquals(redactUrl(text), text, text);
  }
});

Deno.test("redactUrl: redacts every URL quoted in a message", () => {
  assertEquals(
    redactUrl("Cannot connect to NATS at nats://a:x@h1:4222,nats://b:y@h2:4222: refused"),
    "Cannot connect to NATS at nats://***@h1:4222,nats://***@h2:4222: refused",
  );
  // What the NATS client throws for an unparsable server (measured with @nats-io 3.4).
  assertEquals(
    redactUrl("TypeError: Invalid URL: 'http://[u:s3cret@bad host:4222]'"),
    "TypeError: Invalid URL: 'http://***@bad host:4222]'",
  );
  assertEquals(
    redactUrl("Invalid URL: 'http://u:s3cret@[::1:4222'"),
    "Invalid URL: 'http://***@[::1:4222'",
  );
  // Inside a JSON log line and a TOML excerpt.
  assertEquals(
    redactUrl('{"servers":["nats://u:p@h:1","nats://h:2"],"x":"a@b"}'),
    '{"servers":["nats://***@h:1","nats://h:2"],"x":"a@b"}',
  );
  assertEquals(
    redactUrl('servers = [ "nats://u:p@h:1" x ]'),
    'servers = [ "nats://***@h:1" x ]',
  );
  // Idempotent.
  assertEquals(redactUrl(redactUrl("nats://u:p@h")), "nats://***@h");
});
