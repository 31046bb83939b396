import { connect } from "@nats-io/transport-node";
import { canonicalJson, DeploymentManifest } from "@drover/contracts";
import { startNats } from "../../tests/support/mod.ts";
import { assertEquals, assertStringIncludes } from "../../tests/support/assert.ts";
import { ensureBuckets } from "../nats/kv.ts";
import { ensureRolloutBuckets, saveRolloutState } from "./store.ts";
import { readRevision } from "./history.ts";
import { retryLine, retryStoppedRollout } from "./retry.ts";
import type { RolloutState } from "./state.ts";
import { main } from "../main.ts";
import { tempDir } from "../../tests/support/temp_dir.ts";
import type { CliIo } from "../commands/cli.ts";

const manifest = DeploymentManifest.parse({
  name: "web",
  selector: { devices: ["pi-1"] },
  score: { type: "PodmanV0", services: [{ name: "web", image: "busybox:2" }] },
  rollout: { batches: [{ limit: 1 }] },
});

function state(revision: number, phase: RolloutState["state"]): RolloutState {
  const time = new Date().toISOString();
  return {
    deployment: "web",
    revision,
    stable_revision: 1,
    state: phase,
    batch: 0,
    batches: 1,
    batch_devices: [],
    batch_started_at: time,
    batch_ready_at: null,
    updated: ["pi-1"],
    failures: [],
    message: "",
    paused_by: null,
    started_at: time,
    updated_at: time,
  };
}

Deno.test("retry: a rolled-back revision is stored again as a new one; anything else is not", async () => {
  await using nats = await startNats();
  const nc = await connect({ servers: nats.url });
  try {
    const buckets = await ensureBuckets(nc);
    const rollouts = await ensureRolloutBuckets(nc);
    const revision = await buckets.deployments.put("web", canonicalJson(manifest));
    const kv = await saveRolloutState(rollouts.rollouts, state(revision, "progressing"), undefined);
    const stored = async () => (await buckets.deployments.get("web"))!;
    // Still progressing: nothing to retry, nothing written.
    assertEquals(
      await retryStoppedRollout(buckets, rollouts, "web", (await stored()).revision, manifest),
      undefined,
    );
    assertEquals((await stored()).revision, revision);

    await saveRolloutState(rollouts.rollouts, state(revision, "rolled_back"), kv);
    const retried = await retryStoppedRollout(
      buckets,
      rollouts,
      "web",
      (await stored()).revision,
      manifest,
    );
    assertEquals([retried?.from, retried?.ended], [revision, "rolled_back"]);
    const again = await stored();
    assertEquals(again.revision, retried?.revision);
    assertEquals(again.string(), canonicalJson(manifest), "the same manifest");
    assertEquals(
      (await readRevision(rollouts.history, "web", retried!.revision))?.summary,
      `retry of revision ${revision}: no change`,
    );
    assertEquals(
      retryLine("web", retried!),
      `deployment "web" revision ${revision} was rolled back: retrying it as revision ` +
        `${retried!.revision}\n`,
    );
    // The new revision has no stopped rollout: `rollout retry` refuses and says why.
    const err: string[] = [];
    const io: CliIo = {
      stdout: () => {},
      stderr: (t) => void err.push(t),
      env: () => undefined,
      isTerminal: false,
      signal: new AbortController().signal,
    };
    assertEquals(await main(["rollout", "retry", "web", "--nats", nats.url], io), 1);
    assertStringIncludes(err.join(""), "Nothing to retry");
    // Once that attempt failed too, `rollout retry` starts the next one.
    const current = (await rollouts.rollouts.get("web"))!.revision;
    await saveRolloutState(rollouts.rollouts, state(retried!.revision, "failed"), current);
    const out: string[] = [];
    assertEquals(
      await main(["rollout", "retry", "web", "--nats", nats.url], {
        ...io,
        stdout: (t) => void out.push(t),
      }),
      0,
      err.join(""),
    );
    assertStringIncludes(
      out.join(""),
      `revision ${retried!.revision} failed: retrying it as revision`,
    );
  } finally {
    await nc.close();
  }
});

Deno.test("retry through a set: diff plans a rolled-back manifest as retried, apply -f stores a new attempt", async () => {
  await using nats = await startNats();
  await using dir = await tempDir("drover-retry-test-");
  const nc = await connect({ servers: nats.url });
  try {
    const buckets = await ensureBuckets(nc);
    const rollouts = await ensureRolloutBuckets(nc);
    const revision = await buckets.deployments.put("web", canonicalJson(manifest));
    await saveRolloutState(rollouts.rollouts, state(revision, "rolled_back"), undefined);
    const path = `${dir.path}/web.json`;
    await Deno.writeTextFile(path, JSON.stringify(manifest));
    const run = async (...args: string[]) => {
      const out: string[] = [];
      const err: string[] = [];
      const code = await main([...args, "--nats", nats.url], {
        stdout: (t) => void out.push(t),
        stderr: (t) => void err.push(t),
        env: () => undefined,
        isTerminal: false,
        signal: new AbortController().signal,
      });
      return { code, stdout: out.join(""), stderr: err.join("") };
    };
    const diff = await run("diff", "-f", path);
    assertEquals(diff.code, 1, diff.stderr);
    assertStringIncludes(diff.stdout, `retried`);
    assertStringIncludes(diff.stdout, `retries revision ${revision} (rolled back)`);
    assertStringIncludes(diff.stdout, "1 to retry");
    assertEquals((await buckets.deployments.get("web"))?.revision, revision, "diff stores nothing");
    const applied = await run("apply", "-f", path);
    assertEquals(applied.code, 0, applied.stderr);
    const now = (await buckets.deployments.get("web"))!;
    assertEquals(
      applied.stdout,
      `deployment "web" revision ${revision} was rolled back: retrying it as revision ` +
        `${now.revision}\n`,
    );
    assertEquals(now.string(), canonicalJson(manifest), "the same manifest, a new revision");
    // The new revision's rollout has not stopped: applying it again changes nothing (the control).
    const again = await run("apply", "-f", path);
    assertEquals(again.stdout, `deployment "web" unchanged (revision ${now.revision})\n`);
  } finally {
    await nc.close();
  }
});
