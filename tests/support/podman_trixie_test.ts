import { processesReferencing } from "./_host.ts";
import { holderScript, selectedPodman } from "./_podman_trixie.ts";
import { assert, assertEquals, assertMatch, assertThrows } from "./assert.ts";
import { buildBusyboxImage } from "./busybox_image.ts";
import { HarnessError } from "./errors.ts";
import { podmanFetch, startPodman } from "./podman.ts";

const trixie = selectedPodman() === "trixie";

Deno.test("selectedPodman: host by default, trixie on request, anything else refused", () => {
  assertEquals(selectedPodman(""), "host");
  assertEquals(selectedPodman("host"), "host");
  assertEquals(selectedPodman("trixie"), "trixie");
  assertThrows(() => selectedPodman("bookworm"), HarnessError, "DROVER_PODMAN=bookworm");
});

Deno.test("holderScript pivots the root in (exec must not land in the host's /)", () => {
  const script = holderScript();
  assert(script.includes('mount --bind "$root" "$root"'), script);
  assert(script.indexOf("pivot_root . .host") < script.indexOf("namespace.ready"), script);
});

Deno.test({
  name: "DROVER_PODMAN=trixie: podman 5.4 answers, exec sees the container, cleanup leaves nothing",
  ignore: !trixie,
  async fn() {
    let dir: string;
    {
      await using podman = await startPodman();
      dir = podman.dir;
      const res = await podmanFetch(podman.socket, "/v5.0.0/libpod/version");
      const version = await res.json();
      assertMatch(String(version.Version), /^5\./);
      // The 4.0.0 paths the agent uses still work (MinAPIVersion 4.0.0).
      const ping = await podmanFetch(podman.socket, "/v4.0.0/libpod/_ping");
      assertEquals([ping.status, await ping.text()], [200, "OK"]);

      const image = await buildBusyboxImage(podman);
      const run = await podman.cli([
        "run",
        "-d",
        "--name",
        "c",
        image,
        "sh",
        "-c",
        "touch /mine; sleep 600",
      ]);
      assertEquals(run.code, 0, run.stderr);
      // Under a plain chroot, exec would run in the host's / and find no /mine.
      const exec = await podman.cli([
        "exec",
        "c",
        "sh",
        "-c",
        "sleep 0.2; test -e /mine && echo seen",
      ]);
      assertEquals(exec.stdout.trim(), "seen", exec.stderr);
      assert((await processesReferencing(dir)).length > 0, "the namespace holder and conmon run");
    }
    assertEquals(await processesReferencing(dir), [], "no holder, service or conmon left");
    const gone = await Deno.stat(dir).then(() => false, () => true);
    assert(gone, `${dir} removed`);
  },
});
