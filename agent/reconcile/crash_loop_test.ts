import { assertEquals } from "../../tests/support/assert.ts";
import type { ObservedContainer } from "../runtime/runtime.ts";
import {
  CRASH_LOOP_HEALTHY_MS,
  CRASH_LOOP_MIN_RESTARTS,
  crashLoop,
  crashLoopMessage,
  type RestartTally,
  tallyRestarts,
} from "./crash_loop.ts";

const NOW = 1_000_000_000;

function container(fields: Partial<ObservedContainer>): ObservedContainer {
  return {
    id: "c1",
    name: "app_web",
    deployment: "app",
    service: "web",
    revision: 1,
    specHash: "h",
    state: "running",
    image: "busybox:1",
    labels: {},
    ...fields,
  };
}

Deno.test("crashLoop: too few restarts is no crash loop, whatever the state", () => {
  for (const state of ["running", "exited", "stopped"]) {
    const restarts = CRASH_LOOP_MIN_RESTARTS - 1;
    assertEquals(crashLoop(container({ state, restarts, exitCode: 3 }), NOW), undefined, state);
  }
  assertEquals(crashLoop(container({ state: "exited" }), NOW), undefined, "no count known");
});

Deno.test("crashLoop: dying between restarts, with the last exit code", () => {
  assertEquals(crashLoop(container({ state: "stopped", restarts: 12, exitCode: 3 }), NOW), {
    restarts: 12,
    exitCode: 3,
    healthyInMs: CRASH_LOOP_HEALTHY_MS,
  });
});

Deno.test("crashLoop: running again, but not for long enough yet", () => {
  const c = container({ restarts: 5, exitCode: 3, startedAtMs: NOW - 10_000 });
  assertEquals(crashLoop(c, NOW), { restarts: 5, exitCode: 3, healthyInMs: 20_000 });
  // A start time in the future (clock skew) counts as just started.
  assertEquals(crashLoop({ ...c, startedAtMs: NOW + 5 }, NOW)?.healthyInMs, 30_000);
});

Deno.test("crashLoop: healthy once it has run a full window without a restart", () => {
  const c = container({ restarts: 5, exitCode: 3, startedAtMs: NOW - CRASH_LOOP_HEALTHY_MS });
  assertEquals(crashLoop(c, NOW), undefined);
  // ...and failed again as soon as it dies again (the count grew, the start time moved).
  assertEquals(crashLoop({ ...c, restarts: 6, startedAtMs: NOW }, NOW)?.restarts, 6);
  // A custom window.
  assertEquals(crashLoop({ ...c, startedAtMs: NOW - 1_000 }, NOW, 500), undefined);
});

Deno.test("crashLoopMessage names the service, the exit code and the restarts", () => {
  assertEquals(
    crashLoopMessage("web", { restarts: 12, exitCode: 3, healthyInMs: 1 }),
    'service "web" keeps exiting (exit code 3, 12 restarts); ' +
      "failed until it runs 30 s without a restart",
  );
  assertEquals(
    crashLoopMessage("web", { restarts: 2, healthyInMs: 1 }),
    'service "web" keeps exiting (2 restarts); failed until it runs 30 s without a restart',
  );
});

Deno.test("tallyRestarts: counts only grow, also when the runtime resets them on a start", () => {
  const tallies = new Map<string, RestartTally>();
  const seen = (restarts: number | undefined) =>
    tallyRestarts(tallies, [container({ ...(restarts !== undefined ? { restarts } : {}) })])[0]
      ?.restarts;
  assertEquals(seen(4), 4);
  assertEquals(seen(9), 9);
  // podman set it back to 0 when the agent started the stopped container, then it died twice.
  assertEquals(seen(2), 11);
  assertEquals(seen(2), 11);
  assertEquals(seen(5), 14);
  // Unknown this time: left as is, the tally kept.
  assertEquals(seen(undefined), undefined);
  assertEquals(seen(6), 15);
});
