/**
 * `apply -f FILE [--wait]`: validate a manifest, store it in `deployments`
 * (only when its content changed), and optionally follow the rollout.
 *
 * Missing buckets are created with default settings so that `apply` works
 * before `serve` ever ran; `serve --replicas N` should run first on a cluster.
 *
 * @module
 */

import { canonicalJson, decodeJson, deploymentKey, DeploymentManifest } from "@drover/contracts";
import { type Command, EXIT, stringOption, UsageError } from "./cli.ts";
import { loadManifest } from "../manifests/file.ts";
import { ensureBuckets, retryWhileRecovering } from "../nats/kv.ts";
import { historyEntry, recordRevision } from "../rollout/history.ts";
import { ensureRolloutBuckets } from "../rollout/store.ts";
import { expectPositionals, withNats } from "./_shared.ts";
import { follow, waitOptions, waitTimeoutMs } from "./_wait.ts";

/** What `apply` did to the stored manifest. */
export type ApplyChange = "created" | "configured" | "unchanged";

/** Decides the change from the stored value (or null) and the new manifest. Pure. */
export function applyChange(
  stored: Uint8Array | null,
  manifest: DeploymentManifest,
): ApplyChange {
  if (stored === null) return "created";
  const decoded = decodeJson(DeploymentManifest, stored);
  if (!decoded.ok) return "configured";
  return canonicalJson(decoded.value) === canonicalJson(manifest) ? "unchanged" : "configured";
}

/** The `apply` command. */
export const applyCommand: Command = {
  name: "apply",
  summary: "Create or update a deployment from a manifest file",
  usage: "apply -f FILE [--wait] [--timeout DURATION]",
  description: "FILE is YAML (.yaml/.yml), TOML (.toml) or JSON (.json); other names are\n" +
    'detected from the content; "-" reads standard input. An invalid manifest exits 3\n' +
    "naming the file and the field, and nothing is stored. --wait follows the rollout\n" +
    "until every targeted device runs the new revision (exit 1 on failure or timeout);\n" +
    "with a rollout section, batch by batch until it completes (exit 1 when it is rolled\n" +
    "back, fails or pauses after a failed batch, naming the devices and their reasons).\n" +
    "Every revision is kept in the history (see history NAME, rollout undo NAME).",
  options: {
    file: {
      type: "string",
      short: "f",
      value: "FILE",
      description: "Manifest to apply",
      path: {},
    },
    ...waitOptions("Wait until every targeted device runs it"),
  },
  connects: true,
  async run({ values, positionals, io }) {
    expectPositionals(positionals, 0, "apply", "");
    const file = stringOption(values, "file");
    if (file === undefined) throw new UsageError("Missing -f FILE", "apply");
    const timeoutMs = waitTimeoutMs(values, "apply");
    // Validate before connecting: an invalid file never touches NATS.
    const manifest = await loadManifest(file);
    return await withNats(values, io, async (nc) => {
      const buckets = await ensureBuckets(nc);
      const rollouts = await ensureRolloutBuckets(nc);
      const key = deploymentKey(manifest.name);
      // Idempotent reads and writes survive a cluster node lost mid-command.
      const stored = await retryWhileRecovering(() => buckets.deployments.get(key));
      const change = applyChange(stored?.operation === "PUT" ? stored.value : null, manifest);
      let revision = stored?.revision ?? 0;
      if (change !== "unchanged") {
        revision = await retryWhileRecovering(() =>
          buckets.deployments.put(key, canonicalJson(manifest))
        );
        // With its summary against what it replaces (the operator records it too if this fails).
        const previous = stored?.operation === "PUT"
          ? decodeJson(DeploymentManifest, stored.value)
          : undefined;
        await retryWhileRecovering(() =>
          recordRevision(
            rollouts.history,
            historyEntry(manifest, revision, previous?.ok ? previous.value : undefined, new Date()),
          )
        );
      }
      io.stdout(`deployment "${manifest.name}" ${change} (revision ${revision})\n`);
      if (!values.wait) return EXIT.ok;
      return await follow(buckets, rollouts.rollouts, manifest.name, revision, timeoutMs, io);
    });
  },
};
