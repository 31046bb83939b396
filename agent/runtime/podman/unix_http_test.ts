// The real path (podman's own answers, event and log streams) is covered by client_test.ts and
// the runtime tests against a real podman service; here a scripted unix-socket server (FAKE)
// sends framings podman rarely does (chunk boundaries inside lines, split heads, early ends).
import { assertEquals, assertRejects } from "../../../tests/support/assert.ts";
import { tempDir } from "../../../tests/support/temp_dir.ts";
import { parseHead, requestHead, UnixHttp } from "./unix_http.ts";

Deno.test("requestHead: head, length for bodies and for POST without one", () => {
  const text = (b: Uint8Array) => new TextDecoder().decode(b);
  assertEquals(
    text(requestHead({ method: "GET", target: "/v4.0.0/x?a=1", host: "libpod" })),
    "GET /v4.0.0/x?a=1 HTTP/1.1\r\nHost: libpod\r\nConnection: close\r\n\r\n",
  );
  assertEquals(
    text(requestHead({ method: "POST", target: "/p", host: "libpod", body: '{"a":1}' })),
    'POST /p HTTP/1.1\r\nHost: libpod\r\nContent-Length: 7\r\nConnection: close\r\n\r\n{"a":1}',
  );
  assertEquals(
    text(requestHead({ method: "DELETE", target: "/d", host: "libpod" })),
    "DELETE /d HTTP/1.1\r\nHost: libpod\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
  );
  const headers = new Headers({ "X-Registry-Auth": "abc" });
  assertEquals(
    text(requestHead({ method: "GET", target: "/", host: "libpod", headers })),
    "GET / HTTP/1.1\r\nHost: libpod\r\nx-registry-auth: abc\r\nConnection: close\r\n\r\n",
  );
});

Deno.test("parseHead: status, reason, repeated headers; not HTTP is an error", () => {
  const head = parseHead("HTTP/1.1 404 Not Found\r\nA: 1\r\nA: 2\r\nContent-Type: x");
  assertEquals(head.status, 404);
  assertEquals(head.statusText, "Not Found");
  assertEquals(head.headers.get("a"), "1, 2");
  assertEquals(parseHead("HTTP/1.0 204").status, 204);
  let error: unknown;
  try {
    parseHead("SSH-2.0-OpenSSH");
  } catch (e) {
    error = e;
  }
  assertEquals((error as Error).message, 'Not an HTTP response: "SSH-2.0-OpenSSH"');
});

/** FAKE server: answers each connection with `pieces`, written one at a time. */
function serve(path: string, pieces: string[]): Deno.Listener {
  const listener = Deno.listen({ transport: "unix", path });
  (async () => {
    for await (const conn of listener) {
      (async () => {
        await conn.read(new Uint8Array(4096));
        for (const piece of pieces) {
          await conn.write(new TextEncoder().encode(piece));
          await new Promise((r) => setTimeout(r, 5));
        }
        conn.close();
      })().catch(() => {});
    }
  })().catch(() => {});
  return listener;
}

Deno.test("UnixHttp: chunked, length and until-close bodies; a body cut short fails", async () => {
  await using dir = await tempDir("drover-unix-http-");
  const cases: Array<[string[], string]> = [
    [[
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n",
      "\r\n5\r\nhel",
      "lo\r\n6\r\n wor",
      "ld\r\n0\r\n\r\n",
    ], "hello world"],
    [["HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab", "cde"], "abcde"],
    [["HTTP/1.1 200 OK\r\n\r\nuntil ", "the end"], "until the end"],
  ];
  for (const [i, [pieces, expected]] of cases.entries()) {
    const listener = serve(`${dir.path}/s${i}.sock`, pieces);
    const http = new UnixHttp(`${dir.path}/s${i}.sock`);
    try {
      const res = await http.fetch({ method: "GET", target: "/", host: "libpod" });
      assertEquals(res.status, 200);
      assertEquals(await res.text(), expected);
    } finally {
      http.close();
      listener.close();
    }
  }
  const listener = serve(`${dir.path}/short.sock`, [
    "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc",
  ]);
  const http = new UnixHttp(`${dir.path}/short.sock`);
  try {
    const res = await http.fetch({ method: "GET", target: "/", host: "libpod" });
    await assertRejects(() => res.text(), TypeError, "ended early");
  } finally {
    http.close();
    listener.close();
  }
});

Deno.test("UnixHttp: 204 has no body; an abort ends a stream with the signal's reason", async () => {
  await using dir = await tempDir("drover-unix-http-");
  const listener = serve(`${dir.path}/s.sock`, [
    "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\none\r\n",
    ...Array(200).fill("3\r\nmor\r\n"),
  ]);
  const empty = serve(`${dir.path}/e.sock`, ["HTTP/1.1 204 No Content\r\n\r\n"]);
  try {
    const none = await new UnixHttp(`${dir.path}/e.sock`).fetch({
      method: "DELETE",
      target: "/",
      host: "libpod",
    });
    assertEquals([none.status, none.body], [204, null]);
    const controller = new AbortController();
    const http = new UnixHttp(`${dir.path}/s.sock`);
    const res = await http.fetch({
      method: "GET",
      target: "/events",
      host: "libpod",
      signal: controller.signal,
    });
    const reader = res.body!.getReader();
    assertEquals(new TextDecoder().decode((await reader.read()).value), "one");
    controller.abort(new Error("stop"));
    await assertRejects(
      async () => {
        for (;;) if ((await reader.read()).done) break;
      },
      Error,
      "stop",
    );
    http.close();
  } finally {
    listener.close();
    empty.close();
  }
});
