import { assert, assertEquals, assertThrows } from "../../../tests/support/assert.ts";
import { classifyCreateFailure, encodeRegistryAuth, PodmanClient, segment } from "./client.ts";
import {
  ImageNotFoundError,
  isNotFoundError,
  NameConflictError,
  parseErrorBody,
  PodmanError,
} from "./errors.ts";

Deno.test("encodeRegistryAuth is padded URL-safe base64 of the credentials JSON", () => {
  // "?>" in the password yields "+" and "/" in standard base64.
  const auth = { username: "drover", password: "p?>?>ü", serveraddress: "127.0.0.1:5000" };
  const header = encodeRegistryAuth(auth);
  assert(!/[+/]/.test(header), `header must be URL-safe: ${header}`);
  const standard = header.replaceAll("-", "+").replaceAll("_", "/");
  assert(/[+/]/.test(standard), "the sample must exercise the URL-safe alphabet");
  const json = new TextDecoder().decode(Uint8Array.from(atob(standard), (c) => c.charCodeAt(0)));
  assertEquals(JSON.parse(json), auth);
  assertEquals(header.length % 4, 0);
});

Deno.test("segment encodes names and refuses ones URL parsing would resolve", () => {
  assertEquals(
    segment("localhost/drover/busybox:latest", "image"),
    "localhost%2Fdrover%2Fbusybox%3Alatest",
  );
  assertEquals(segment("a?b#c d", "container"), "a%3Fb%23c%20d");
  for (const bad of ["", ".", ".."]) {
    assertThrows(() => segment(bad, "container name or id"), TypeError, "container name or id");
  }
});

Deno.test("parseErrorBody reads podman's JSON and keeps non-JSON text", () => {
  assertEquals(
    parseErrorBody(
      '{"cause":"no such container","message":"no container with name","response":404}',
    ),
    { message: "no container with name", cause: "no such container" },
  );
  assertEquals(parseErrorBody("bad gateway\n"), { message: "bad gateway" });
  assertEquals(parseErrorBody(""), {});
});

Deno.test("classifyCreateFailure tells a taken name from a missing image", () => {
  const spec = { name: "demo_web", image: "localhost/nope:1" };
  const info = { method: "POST", path: "/libpod/containers/create", status: 500 };
  const conflict = classifyCreateFailure(spec, {
    ...info,
    podmanMessage:
      'creating container storage: the container name "demo_web" is already in use by 3dab',
    podmanCause: "that name is already in use",
  });
  assert(conflict instanceof NameConflictError);
  assertEquals(conflict.containerName, "demo_web");
  assert(conflict.message.includes('"demo_web"'), conflict.message);

  const missing = classifyCreateFailure(spec, {
    ...info,
    podmanMessage: "localhost/nope:1: image not known",
    podmanCause: "image not known",
  });
  assert(missing instanceof ImageNotFoundError && isNotFoundError(missing));
  assertEquals(missing.image, "localhost/nope:1");
  assert(missing.message.includes('container "demo_web"'), missing.message);
  assert(missing.message.includes('image "localhost/nope:1"'), missing.message);

  const other = classifyCreateFailure(spec, { ...info, podmanMessage: "invalid config" });
  assert(other instanceof PodmanError && !(other instanceof NameConflictError));
  assertEquals(other.status, 500);
  assert(other.message.includes("invalid config"), other.message);
});

Deno.test("PodmanClient refuses an empty socket path and a malformed API version", () => {
  assertThrows(() => new PodmanClient({ socketPath: "" }), TypeError, "socketPath");
  assertThrows(
    () => new PodmanClient({ socketPath: "/run/podman/podman.sock", apiVersion: "4.0" }),
    TypeError,
    "apiVersion",
  );
});
