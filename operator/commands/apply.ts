/**
 * `apply -f FILE [--wait]`: validate a manifest, store it in `deployments`
 * (only when its content changed), and optionally follow the rollout.
 *
 * Missing buckets are created with default settings so that `apply` works
 * before `serve` ever ran; `serve --replicas N` should run first on a cluster.
 *
 * @module
 */

import {
  canonicalJson,
  decodeJson,
  deploymentKey,
  DeploymentManifest,
  secretNamesOf,
  type SecretRecord,
} from "@drover/contracts";
import type { NatsConnection } from "@nats-io/transport-node";
import { latestVersion, openSecretsBucket, readSecret } from "../secrets/store.ts";
import { pinSecretVersions } from "../secrets/usage.ts";
import {
  type CliIo,
  type Command,
  EXIT,
  OperationError,
  parseDuration,
  stringOption,
  UsageError,
} from "./cli.ts";
import { loadManifest } from "../manifests/file.ts";
import { type Buckets, ensureBuckets, retryWhileRecovering } from "../nats/kv.ts";
import { waitForRollout, type WaitResult } from "../rollout/follow.ts";
import { escapeControl, summaryCounts } from "./render.ts";
import { historyEntry, recordRevision } from "../rollout/history.ts";
import { ensureRolloutBuckets } from "../rollout/store.ts";
import { failureLines } from "../rollout/view.ts";
import type { KV } from "@nats-io/kv";
import { expectPositionals, withNats } from "./_shared.ts";

/** Default for `--timeout`. */
export const DEFAULT_WAIT_TIMEOUT = "120s";

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
    wait: { type: "boolean", description: "Wait until every targeted device runs it" },
    timeout: {
      type: "string",
      value: "DURATION",
      description: `How long --wait waits (default ${DEFAULT_WAIT_TIMEOUT})`,
    },
  },
  connects: true,
  async run({ values, positionals, io }) {
    expectPositionals(positionals, 0, "apply", "");
    const file = stringOption(values, "file");
    if (file === undefined) throw new UsageError("Missing -f FILE", "apply");
    const timeoutMs = parseDuration(stringOption(values, "timeout") ?? DEFAULT_WAIT_TIMEOUT);
    if (values.timeout !== undefined && !values.wait) {
      throw new UsageError("--timeout only makes sense with --wait", "apply");
    }
    // Validate before connecting: an invalid file never touches NATS.
    const loaded = await loadManifest(file);
    return await withNats(values, io, async (nc) => {
      // Pins the current version of every secret it uses; a missing one is refused here.
      const manifest = await withSecretVersions(nc, loaded, file);
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

/** Most bytes of sealed secrets one deployment's desired state may carry (a KV value is 1 MiB). */
export const MAX_SEALED_SECRETS_BYTES = 512 * 1024;

/**
 * `manifest` with the current version of each secret it references pinned
 * (`secret_versions`, whatever the file said). @throws {OperationError}
 * naming each secret the store does not hold and the command that adds it.
 */
async function withSecretVersions(
  nc: NatsConnection,
  manifest: DeploymentManifest,
  file: string,
): Promise<DeploymentManifest> {
  const names = secretNamesOf(manifest.score);
  if (names.length === 0) return pinSecretVersions(manifest, new Map());
  const kv = await openSecretsBucket(nc);
  const versions = new Map<string, number>();
  const records = new Map<string, SecretRecord>();
  const missing: string[] = [];
  for (const name of names) {
    const stored = await readSecret(kv, name);
    if (stored === undefined) {
      missing.push(name);
    } else {
      versions.set(name, latestVersion(stored.record));
      records.set(name, stored.record);
    }
  }
  if (missing.length > 0) {
    throw new OperationError(
      `Cannot apply ${file}: deployment "${manifest.name}" uses secret(s) the operator does ` +
        `not have: ${missing.join(", ")}`,
      missing.map((name) => `store it first: operator secret set ${name} --from-file FILE`),
    );
  }
  // Each device's copy carries them all sealed: it must fit one KV value with the score.
  const sealedBytes = [...versions].reduce((n, [name, version]) => {
    const stored = records.get(name)?.versions.find((v) => v.version === version);
    return n + (stored?.sealed.length ?? 0);
  }, 0);
  if (sealedBytes > MAX_SEALED_SECRETS_BYTES) {
    throw new OperationError(
      `Cannot apply ${file}: deployment "${manifest.name}" uses ${sealedBytes} bytes of sealed ` +
        `secrets; at most ${MAX_SEALED_SECRETS_BYTES} fit its desired state`,
    );
  }
  return pinSecretVersions(manifest, versions);
}

/** Follows the rollout of `revision` (`--wait`), printing progress; the exit code. */
export async function follow(
  buckets: Buckets,
  rollouts: KV,
  name: string,
  revision: number,
  timeoutMs: number,
  io: CliIo,
): Promise<number> {
  let lastPrint = 0;
  const result = await waitForRollout(buckets, name, revision, {
    timeoutMs,
    signal: io.signal,
    onProgress(line, changed) {
      if (io.isTerminal) {
        if (changed) io.stdout(`\r\x1b[2K${line}`);
      } else if (changed || Date.now() - lastPrint >= 10_000) {
        io.stdout(`${line}\n`);
        lastPrint = Date.now();
      }
    },
  }, rollouts);
  if (io.isTerminal) io.stdout("\n");
  if (result.kind === "done" && result.view.targeted === 0) {
    io.stderr(`warning: deployment "${name}" targets no device yet\n`);
  }
  return reportWait(result, name, timeoutMs);
}

function deviceLines(result: WaitResult, onlyFailed: boolean): string[] {
  if (!("view" in result) || result.view === undefined) return [];
  return result.view.devices
    .filter((d) => (onlyFailed ? d.phase === "failed" : d.phase !== "ready"))
    .slice(0, 20)
    // The message is the device's own text: escaped, it cannot drive the terminal.
    .map((d) => escapeControl(`${d.device_id}: ${d.phase}: ${d.message}`));
}

function reportWait(result: WaitResult, name: string, timeoutMs: number): number {
  switch (result.kind) {
    case "done":
      return EXIT.ok;
    case "failed":
      throw new OperationError(
        `Rollout of "${name}" failed: ${summaryCounts(result.view)}`,
        deviceLines(result, true),
      );
    case "rollout_failed": {
      const r = result.rollout;
      const how = r.state === "rolled_back"
        ? "was rolled back"
        : r.state === "paused"
        ? `paused in batch ${r.batch} of ${r.batches}`
        : "failed";
      throw new OperationError(
        escapeControl(`Rollout of "${name}" revision ${r.revision} ${how}: ${r.message}`),
        [
          ...failureLines(r.failures),
          ...(r.state === "paused"
            ? [`"rollout resume ${name}" continues, "rollout undo ${name}" goes back`]
            : []),
        ],
      );
    }
    case "superseded":
      throw new OperationError(
        `Rollout of "${name}" superseded: the deployment was changed again (revision ${result.revision})`,
      );
    case "interrupted":
      throw new OperationError(`Stopped waiting for "${name}" (interrupted)`);
    case "timeout": {
      const details = deviceLines(result, false);
      if (
        result.view === undefined || result.view.devices.every((d) => d.wanted_revision === null)
      ) {
        details.push('no desired state was written: is "drover-operator serve" running?');
      }
      throw new OperationError(
        `Rollout of "${name}" did not finish within ${timeoutMs / 1000}s` +
          (result.view ? `: ${summaryCounts(result.view)}` : ""),
        details,
      );
    }
  }
}
