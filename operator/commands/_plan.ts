/**
 * What `apply` and `diff` share: the `-f/--source/--prune` options, loading
 * the manifest set (every problem reported before anything connects), reading
 * what is stored and planning, and printing the plan.
 *
 * @module
 */

import type { NatsConnection } from "@nats-io/transport-node";
import {
  BUCKET_DEPLOYMENTS,
  BUCKET_DEVICES,
  BUCKET_ROLLOUTS,
  BUCKET_SECRETS,
  decodeJson,
  nameProblem,
  rolloutKey,
  type SecretRecord,
} from "@drover/contracts";
import {
  type CliIo,
  InvalidInputError,
  type OptionSpecs,
  type OptionValues,
  stringOption,
  UsageError,
} from "./cli.ts";
import { documentLabel, problemsError } from "../manifests/file.ts";
import { displayPath, type ManifestSet, manifestSet, readManifestTexts } from "../manifests/set.ts";
import {
  type ApplyPlan,
  type CurrentSecret,
  planApply,
  planCounts,
  type StoredDeployment,
} from "../manifests/plan.ts";
import { FleetState } from "../fleet/state.ts";
import { knownDevices } from "../desired/targeting.ts";
import { openBucket, readBucket } from "../nats/kv.ts";
import { latestVersion, readSecrets } from "../secrets/store.ts";
import type { KV } from "@nats-io/kv";
import { table } from "../views/render.ts";
import { RolloutState } from "../rollout/state.ts";

/** `-f PATH…`, `--source NAME`, `--prune`. */
export const SET_OPTIONS: OptionSpecs = {
  file: {
    type: "string",
    short: "f",
    multiple: true,
    value: "PATH",
    description: 'Manifest file or directory (recursive); repeatable; "-" reads standard input',
    path: {},
  },
  source: {
    type: "string",
    value: "NAME",
    description: "The set these manifests belong to (e.g. the repository), stored with each",
  },
  prune: {
    type: "boolean",
    description: "Also delete deployments of --source that the set no longer holds",
  },
};

/** The set's options, checked. */
export interface SetArgs {
  paths: string[];
  source?: string;
  prune: boolean;
}

/** Reads and checks `-f`, `--source` and `--prune`. */
export function setArgs(values: OptionValues, command: string): SetArgs {
  const file = values.file;
  const paths = Array.isArray(file) ? file : typeof file === "string" ? [file] : [];
  if (paths.length === 0) throw new UsageError("Missing -f PATH", command);
  const source = stringOption(values, "source");
  const prune = values.prune === true;
  if (prune && source === undefined) {
    throw new UsageError(
      "--prune needs --source NAME: only deployments applied from that source are pruned",
      command,
    );
  }
  if (source !== undefined) {
    const problem = nameProblem(source);
    if (problem) throw new InvalidInputError(`Invalid --source "${source}": ${problem}`);
  }
  return { paths, ...(source !== undefined ? { source } : {}), prune };
}

/**
 * Reads and validates every manifest of the set.
 *
 * @throws {ManifestError} naming every problem of every file; nothing is changed.
 */
export async function loadSet(paths: readonly string[], io: CliIo): Promise<ManifestSet> {
  const read = await readManifestTexts(
    paths,
    () => new Response(Deno.stdin.readable).text(),
    (p) => displayPath(p, io.cwd),
  );
  const set = manifestSet(read.texts, read.problems);
  if (set.problems.length > 0) throw problemsError(set.problems);
  return set;
}

/** What the plan is made from: stored deployments, the registered devices and the secrets. */
export interface StoredFleet {
  deployments: Map<string, StoredDeployment>;
  devices: ReturnType<typeof knownDevices>;
  /** Each stored secret's current version: what manifests get pinned. */
  secrets: Map<string, CurrentSecret>;
}

/**
 * Reads `deployments`, the device registry, the rollout states (which stored
 * revisions stopped short, so applying them again retries them) and the
 * secret store. Without `buckets` (diff, dry run) they are only opened: a
 * missing bucket reads as empty and nothing is created. The secret store is
 * only opened either way: without it there are no secrets to pin.
 */
export async function readStoredFleet(
  nc: NatsConnection,
  buckets?: { deployments: KV; devices: KV; rollouts: KV },
): Promise<StoredFleet> {
  const read = async (kv: KV | undefined) => (kv === undefined ? new Map() : await readBucket(kv));
  const secretsKv = await openBucket(nc, BUCKET_SECRETS);
  const [deployments, registry, rollouts, secrets] = await Promise.all([
    read(buckets?.deployments ?? await openBucket(nc, BUCKET_DEPLOYMENTS)),
    read(buckets?.devices ?? await openBucket(nc, BUCKET_DEVICES)),
    read(buckets?.rollouts ?? await openBucket(nc, BUCKET_ROLLOUTS)),
    secretsKv === undefined ? new Map<string, SecretRecord>() : readSecrets(secretsKv),
  ]);
  const state = new FleetState();
  for (const entry of deployments.values()) state.applyDeployment(entry);
  for (const entry of registry.values()) state.applyRegistration(entry);
  const stored = new Map<string, StoredDeployment>();
  for (const [name, record] of state.manifests) {
    const rollout = rollouts.get(rolloutKey(name));
    const decoded = rollout?.operation === "PUT"
      ? decodeJson(RolloutState, rollout.value)
      : undefined;
    const ended = decoded?.ok && decoded.value.revision === record.revision
      ? decoded.value.state
      : undefined;
    stored.set(name, {
      revision: record.revision,
      ...(record.manifest !== undefined ? { manifest: record.manifest } : {}),
      ...(ended === "rolled_back" || ended === "failed" ? { stopped: ended } : {}),
    });
  }
  const current = new Map<string, CurrentSecret>();
  for (const [name, record] of secrets) {
    const version = latestVersion(record);
    const sealed = record.versions.find((v) => v.version === version)?.sealed ?? "";
    current.set(name, { version, sealedBytes: sealed.length });
  }
  return { deployments: stored, devices: knownDevices(state.registry), secrets: current };
}

/**
 * Plans the set over what is stored; prints its warnings.
 *
 * @throws {ManifestError} when the set cannot be applied (another source's deployment…).
 */
export function planSet(set: ManifestSet, fleet: StoredFleet, args: SetArgs, io: CliIo): ApplyPlan {
  const plan = planApply(set.manifests, fleet.deployments, fleet.devices, {
    ...(args.source !== undefined ? { source: args.source } : {}),
    prune: args.prune,
    secrets: fleet.secrets,
  });
  if (plan.conflicts.length > 0) throw problemsError(plan.conflicts);
  for (const warning of plan.warnings) io.stderr(`warning: ${warning}\n`);
  return plan;
}

/** The plan as a table with a closing count line. Pure. */
export function planTable(plan: ApplyPlan): string {
  const counts = planCounts(plan);
  const rows = plan.entries.map((e) => [
    e.name,
    e.action,
    String(e.devices),
    e.file === undefined ? "-" : documentLabel({
      file: e.file,
      ...(e.document !== undefined ? { document: e.document } : {}),
    }),
    e.summary || "-",
  ]);
  return table(["DEPLOYMENT", "CHANGE", "DEVICES", "FILE", "SUMMARY"], rows) +
    `\n${counts.created} to create, ${counts.changed} to change, ` +
    (counts.retried > 0 ? `${counts.retried} to retry, ` : "") +
    `${counts.deleted} to delete, ${counts.unchanged} unchanged.\n`;
}

/** The plan for `-o json`: each entry without its manifest, and the counts. Pure. */
export function planJson(plan: ApplyPlan, args: SetArgs): unknown {
  return {
    source: args.source ?? null,
    prune: args.prune,
    counts: planCounts(plan),
    changes: plan.entries.map(({ manifest: _, ...entry }) => entry),
  };
}
