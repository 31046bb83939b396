/**
 * The HTTP API of a real `operator serve` (real nats-server) from a browser
 * an attacker steers: without a token, a request naming a foreign Host (a
 * DNS-rebinding page re-pointed at 127.0.0.1) is refused, loopback names are
 * answered (the positive control).
 */
import { freePort, startNats } from "../support/mod.ts";
import { startOperatorService } from "../support/operator_process.ts";
import { assertEquals, assertStringIncludes } from "../support/assert.ts";

/** One HTTP/1.1 GET over a raw socket, so that the Host header is exactly `host`. */
async function getWithHost(
  port: number,
  path: string,
  host: string,
): Promise<{ status: number; body: string }> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    await conn.write(
      new TextEncoder().encode(
        `GET ${path} HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`,
      ),
    );
    const text = await new Response(conn.readable).text();
    const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1] ?? NaN);
    return { status, body: text.slice(text.indexOf("\r\n\r\n") + 4) };
  } finally {
    try {
      conn.close();
    } catch { /* closed by the reader */ }
  }
}

Deno.test("http: without a token only loopback Host names are answered (DNS rebinding)", async () => {
  await using nats = await startNats();
  const port = await freePort();
  await using _operator = await startOperatorService(nats.url, port);
  for (const host of [`127.0.0.1:${port}`, `localhost:${port}`, `[::1]:${port}`]) {
    const ok = await getWithHost(port, "/api/devices", host);
    assertEquals(ok.status, 200, `Host ${host}: ${ok.body}`);
  }
  for (const host of [`rebind.attacker.example:${port}`, "rebind.attacker.example", "10.0.0.5"]) {
    const refused = await getWithHost(port, "/api/devices", host);
    assertEquals(refused.status, 403, `Host ${host}: ${refused.body}`);
    assertStringIncludes(refused.body, "only loopback names");
  }
  const dashboard = await getWithHost(port, "/", "rebind.attacker.example");
  assertEquals(dashboard.status, 403, "the dashboard too");
});

Deno.test("http: a dashboard session ends on logout, also for a copy of its cookie", async () => {
  await using nats = await startNats();
  const token = "a-test-token-of-32-characters-xx";
  await using operator = await startOperatorService(nats.url, await freePort(), [
    "--api-token",
    token,
  ]);
  const login = await fetch(`${operator.apiUrl}/ui/login`, {
    method: "POST",
    body: new URLSearchParams({ token, next: "/" }),
    redirect: "manual",
  });
  await login.body?.cancel();
  assertEquals(login.status, 303);
  const cookie = (login.headers.get("set-cookie") ?? "").split(";")[0] ?? "";
  const page = async () => {
    const res = await fetch(`${operator.apiUrl}/`, { headers: { cookie }, redirect: "manual" });
    await res.body?.cancel();
    return res.status;
  };
  assertEquals(await page(), 200, "the session opens the dashboard");
  const logout = await fetch(`${operator.apiUrl}/ui/logout`, {
    method: "POST",
    headers: { cookie },
    redirect: "manual",
  });
  await logout.body?.cancel();
  assertEquals(logout.status, 303);
  assertEquals(await page(), 303, "the same cookie, replayed after logout, is sent to the login");
});
