import { assertEquals } from "../tests/support/assert.ts";
import { parseImageReference, parsePortMapping, parseVolumeMount } from "./mod.ts";

Deno.test("parsePortMapping: compose short syntax", () => {
  assertEquals(parsePortMapping("8080:80"), { hostPort: 8080, containerPort: 80, protocol: "tcp" });
  assertEquals(parsePortMapping("127.0.0.1:8080:80/udp"), {
    hostIp: "127.0.0.1",
    hostPort: 8080,
    containerPort: 80,
    protocol: "udp",
  });
  assertEquals(parsePortMapping("80"), { containerPort: 80, protocol: "tcp" });
  assertEquals(parsePortMapping("[::1]:53:53/udp"), {
    hostIp: "::1",
    hostPort: 53,
    containerPort: 53,
    protocol: "udp",
  });
  for (
    const bad of [
      "",
      "a:80",
      "0:80",
      "80:65536",
      "1.2.3:80:80",
      "300.1.1.1:80:80",
      "1:2:3:4",
      "80/tcpx",
    ]
  ) {
    assertEquals(typeof parsePortMapping(bad), "string", bad);
  }
});

Deno.test("parseVolumeMount: bind mounts and named volumes", () => {
  assertEquals(parseVolumeMount("/srv/www:/www:ro"), {
    type: "bind",
    source: "/srv/www",
    target: "/www",
    readOnly: true,
  });
  assertEquals(parseVolumeMount("data:/data"), {
    type: "volume",
    source: "data",
    target: "/data",
    readOnly: false,
  });
  for (const bad of ["/a", "/a:/b:rx", "/a/../etc:/b", "a b:/c", "/a:b", "/a:/b:ro:x"]) {
    assertEquals(typeof parseVolumeMount(bad), "string", bad);
  }
});

Deno.test("parseImageReference: registry, repository, tag and digest", () => {
  assertEquals(parseImageReference("busybox"), {
    registry: "docker.io",
    repository: "library/busybox",
  });
  assertEquals(parseImageReference("localhost/drover/busybox:latest"), {
    registry: "localhost",
    repository: "drover/busybox",
    tag: "latest",
  });
  assertEquals(parseImageReference("127.0.0.1:5000/web:1"), {
    registry: "127.0.0.1:5000",
    repository: "web",
    tag: "1",
  });
  assertEquals(parseImageReference("quay.io/a/b"), { registry: "quay.io", repository: "a/b" });
  for (const bad of ["", "UPPER", "a//b", "a:b:c", "a@sha256:xyz", "-a", "a/", "http://x/y"]) {
    assertEquals(typeof parseImageReference(bad), "string", bad);
  }
});
