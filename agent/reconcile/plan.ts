/**
 * The planner: desired state and observed containers in, the next safe steps
 * out. Pure — no I/O, no clock — so every rule below is a unit test.
 *
 * Rules, per deployment:
 * - an `invalid` entry, or one `blocked` by device policy, yields no actions:
 *   its running containers stay untouched until a good value arrives;
 * - a deployment that is not desired is removed only when removal is allowed
 *   (`authoritative` view, or the key was explicitly deleted) — a partial view
 *   (offline, no cache) never removes workloads;
 * - containers of services that left the deployment are removed, and so are
 *   duplicates (two containers for one service) keeping the best one;
 * - a missing service is pulled (if needed) then created and started;
 * - a container whose `drover.spec-hash` differs is replaced: pull first (so a
 *   failing pull leaves the old one running), then remove, then create;
 * - a revision-only change with the same spec hash replaces nothing;
 * - a stopped container is started when its restart policy keeps it running
 *   (`always`, `unless-stopped`); with `no`/`on-failure` an exited container
 *   is left as is (it ran to completion or podman gave up on it), though one
 *   that was created but never started is started;
 * - a service is created or started only once its `depends_on` conditions
 *   hold, and a job (waited on with `service_completed_successfully`) runs
 *   again only for a new revision (ordering.ts);
 * - a deployment's network goes after its containers when the deployment is
 *   removed.
 *
 * Image pulls follow Kubernetes' default (IfNotPresent): pull only when the
 * image is missing, except `:latest`/untagged references, which are pulled
 * again — but only when a container is being created, never on a quiet pass.
 *
 * Pulls and creates name the image fully qualified (`busybox:1` →
 * `docker.io/library/busybox:1`, see `normalizeImageReference`), the same
 * string the registry allow-list checked: podman never resolves a short name.
 * The spec hash stays the hash of the service as the operator wrote it (see
 * `serviceHashes`), so an agent upgrade that starts qualifying names replaces
 * no running container.
 *
 * @module
 */

import {
  canonicalCapability,
  containerName,
  DEFAULT_LOG_MAX_SIZE,
  LABELS,
  MANAGED_LABEL_VALUE,
  parseByteSize,
  parseDeviceMapping,
  parseImageReference,
  parsePortMapping,
  parseTmpfsMount,
  parseVolumeMount,
  type PodmanService,
  type PortMapping,
  qualifiedImageName,
  tmpfsEntries,
  type VolumeMount,
} from "@drover/contracts";
import {
  type ContainerSpec,
  type FileMountSpec,
  type ObservedContainer,
  STARTABLE_STATES,
} from "../runtime/runtime.ts";
import type { DesiredEntry } from "./desired.ts";
import { healthCheckSpec, stopTimeoutSeconds } from "./health.ts";
import { fileMountsOf } from "./files.ts";
import { currentContainer, jobServices, unmetDependencies } from "./ordering.ts";

/** Why an action is planned; stable codes for logs and tests. */
export type ActionReason =
  | "missing"
  | "spec-changed"
  | "stopped"
  | "duplicate"
  | "service-removed"
  | "deployment-removed"
  | "new-revision";

interface ActionBase {
  deployment: string;
  service: string;
  reason: ActionReason;
}

/** Make sure an image is present before a create. */
export interface PullAction extends ActionBase {
  action: "pull";
  image: string;
  /** `if-missing`: skip when present locally; `always`: pull even so (`:latest`). */
  policy: "if-missing" | "always";
}

/** Create a container from `spec` and start it. */
export interface CreateAction extends ActionBase {
  action: "create";
  revision: number;
  spec: ContainerSpec;
}

/** Start an existing, stopped container. */
export interface StartAction extends ActionBase {
  action: "start";
  containerId: string;
  name: string;
}

/** Force-remove a container. */
export interface RemoveAction extends ActionBase {
  action: "remove";
  containerId: string;
  name: string;
}

/** Remove a deployment's network once its containers are gone. */
export interface RemoveNetworkAction extends ActionBase {
  action: "remove-network";
  network: string;
}

/** One step of a plan, discriminated on `action`. */
export type Action = PullAction | CreateAction | StartAction | RemoveAction | RemoveNetworkAction;

/** Inputs to {@linkcode plan} besides desired and observed state. */
export interface PlanOptions {
  /**
   * Deployments that may be removed when they are not desired: all of them
   * (`true`, the KV snapshot is authoritative), none (`false`), or the given
   * set (keys that were explicitly deleted while the view is partial).
   */
  removable: boolean | ReadonlySet<string>;
  /** Spec hash per container name (`<deployment>_<service>`), see {@linkcode serviceHashes}. */
  specHashes: ReadonlyMap<string, string>;
  /** Deployments the device policy refuses: treated like invalid entries. */
  blocked?: ReadonlySet<string>;
  /** This device's id, written into the `drover.device` label of every container created. */
  deviceId?: string;
  /** Networks this device's agent created, by deployment (label `drover.deployment`). */
  networks?: ReadonlyMap<string, readonly string[]>;
}

/** Restart policies under which Drover keeps a container running itself. */
const KEEP_RUNNING = new Set(["always", "unless-stopped"]);
/** Runtime states a `start` is planned for (the rest are running or transitional). */
export const STARTABLE: ReadonlySet<string> = STARTABLE_STATES;
/** States that only ever follow a create (never ran yet). */
const NEVER_RAN = new Set(["created", "initialized", "configured"]);

/**
 * Builds the container spec of one service: name `<deployment>_<service>`,
 * Drover's labels on top of the user's, short-syntax ports and volumes parsed,
 * the image fully qualified. `specHash` is the hash of `service` as received
 * (short image name and all), not of the qualified spec. With `deviceId`, the
 * container is labelled as that device's (`drover.device`, see ownership.ts);
 * the label is not part of the spec hash, so adding it replaces nothing.
 * `drover.revision` is `deploymentRevision` (what people see) when the
 * desired state has one, `drover.kv-revision` the KV `revision` always.
 *
 * @throws {Error} if an image, port or volume string does not parse —
 * impossible for a `PodmanService` that passed the contract schema.
 */
export function toContainerSpec(
  deployment: string,
  revision: number,
  service: PodmanService,
  specHash: string,
  deviceId?: string,
  files: readonly FileMountSpec[] = [],
  deploymentRevision?: number,
): ContainerSpec {
  const ports: PortMapping[] = (service.ports ?? []).map((p) => parsedOrThrow(parsePortMapping(p)));
  const volumes: VolumeMount[] = (service.volumes ?? []).map((v) =>
    parsedOrThrow(parseVolumeMount(v))
  );
  const healthcheck = healthCheckSpec(service.healthcheck);
  const owner = {
    [LABELS.managed]: MANAGED_LABEL_VALUE,
    [LABELS.deployment]: deployment,
    ...(deviceId !== undefined ? { [LABELS.device]: deviceId } : {}),
  };
  return {
    name: containerName(deployment, service.name),
    image: qualifiedImageName(service.image),
    ...(service.command ? { command: [...service.command] } : {}),
    ...(service.entrypoint ? { entrypoint: [...service.entrypoint] } : {}),
    env: { ...(service.env ?? {}) },
    ports,
    volumes,
    restart: service.restart,
    labels: {
      ...(service.labels ?? {}),
      [LABELS.managed]: MANAGED_LABEL_VALUE,
      [LABELS.deployment]: deployment,
      [LABELS.service]: service.name,
      // People see the deployment revision; the agent orders containers by the KV one.
      [LABELS.revision]: String(deploymentRevision ?? revision),
      [LABELS.kvRevision]: String(revision),
      [LABELS.specHash]: specHash,
      ...(deviceId !== undefined ? { [LABELS.device]: deviceId } : {}),
    },
    ...(healthcheck ? { healthcheck } : {}),
    stopTimeoutSeconds: stopTimeoutSeconds(service),
    network: service.network_mode === "host" ? { mode: "host" } : {
      mode: "bridge",
      name: deploymentNetworkName(deviceId, deployment),
      aliases: [service.name],
      labels: owner,
    },
    ...(volumes.some((v) => v.type === "volume") ? { volumeLabels: owner } : {}),
    ...workloadFields(service),
    ...(files.length > 0 ? { files: [...files] } : {}),
  };
}

/** The container spec's resource, process, device and log fields of a service. */
function workloadFields(service: PodmanService): Partial<ContainerSpec> {
  const maxSize = service.logging?.options?.["max-size"] ?? DEFAULT_LOG_MAX_SIZE;
  const driver = service.logging?.driver ?? "k8s-file";
  const tmpfs = tmpfsEntries(service.tmpfs).map((t) => parsedOrThrow(parseTmpfsMount(t)));
  return {
    ...(service.mem_limit !== undefined
      ? { memoryBytes: parsedOrThrow(parseByteSize(service.mem_limit)) }
      : {}),
    ...(service.cpus !== undefined ? { cpus: Number(service.cpus) } : {}),
    ...(service.pids_limit !== undefined ? { pidsLimit: service.pids_limit } : {}),
    ...(service.user !== undefined ? { user: service.user } : {}),
    ...(service.working_dir !== undefined ? { workingDir: service.working_dir } : {}),
    ...(service.read_only !== undefined ? { readOnly: service.read_only } : {}),
    ...(tmpfs.length > 0 ? { tmpfs } : {}),
    ...(service.cap_add?.length ? { capAdd: service.cap_add.map(canonicalCapability) } : {}),
    ...(service.cap_drop?.length ? { capDrop: service.cap_drop.map(canonicalCapability) } : {}),
    ...(service.devices?.length
      ? { devices: service.devices.map((d) => parsedOrThrow(parseDeviceMapping(d))) }
      : {}),
    // Capped by default: podman keeps k8s-file logs uncapped unless asked (docs/workloads.md).
    log: driver === "journald" || driver === "none"
      ? { driver }
      : { driver: "k8s-file", maxSizeBytes: parsedOrThrow(parseByteSize(maxSize)) },
  };
}

/** Longest network name Drover gives podman (a DNS label's length, to stay portable). */
export const NETWORK_NAME_MAX_LENGTH = 63;

/**
 * The podman network of one deployment on one device: `drover-<device>_<deployment>`
 * (`_` cannot occur in either name, so two pairs never share a name, and two agents on
 * one podman host never share a network). A name longer than
 * {@linkcode NETWORK_NAME_MAX_LENGTH} keeps its start and ends in a hash of the whole.
 */
export function deploymentNetworkName(deviceId: string | undefined, deployment: string): string {
  const full = deviceId === undefined ? `drover_${deployment}` : `drover-${deviceId}_${deployment}`;
  if (full.length <= NETWORK_NAME_MAX_LENGTH) return full;
  const hash = fnv1a64Hex(full);
  return `${full.slice(0, NETWORK_NAME_MAX_LENGTH - hash.length - 1)}-${hash}`;
}

/** FNV-1a, 64 bits, as 16 hex digits: a short, stable digest of a name (not a secret). */
function fnv1a64Hex(text: string): string {
  let hash = 0xcbf29ce484222325n;
  for (const byte of new TextEncoder().encode(text)) {
    hash ^= BigInt(byte);
    hash = (hash * 0x100000001b3n) & 0xffffffffffffffffn;
  }
  return hash.toString(16).padStart(16, "0");
}

function parsedOrThrow<T>(result: T | string): T {
  if (typeof result === "string") throw new Error(result);
  return result;
}

/**
 * True for references that are pulled even when present: `:latest` and
 * untagged ones (which mean `:latest`). A digest pins the content: never.
 */
export function isAlwaysPull(image: string): boolean {
  const ref = parseImageReference(image);
  if (typeof ref === "string") return false;
  if (ref.digest !== undefined) return false;
  return ref.tag === undefined || ref.tag === "latest";
}

/**
 * True when `container` needs nothing done: same spec, and running — or, for
 * `no`/`on-failure`, having run and exited (podman decides about restarts).
 */
export function isSatisfied(
  container: ObservedContainer,
  specHash: string,
  restart: string,
): boolean {
  if (container.specHash !== specHash) return false;
  if (container.state === "running") return true;
  if (KEEP_RUNNING.has(restart)) return false;
  return !NEVER_RAN.has(container.state);
}

/**
 * Picks the container to keep among several for one service: the one already
 * satisfying the spec, then one with the right spec, then a running one, then
 * the most recent revision; the id breaks ties so the choice is stable.
 */
export function pickKeeper(
  containers: readonly ObservedContainer[],
  specHash: string,
  restart: string,
): ObservedContainer {
  const score = (c: ObservedContainer) =>
    (isSatisfied(c, specHash, restart) ? 8 : 0) + (c.specHash === specHash ? 4 : 0) +
    (c.state === "running" ? 2 : 0);
  const [keeper] = [...containers].sort((a, b) =>
    score(b) - score(a) || b.revision - a.revision || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0)
  );
  if (keeper === undefined) throw new Error("Cannot pick a keeper among no containers");
  return keeper;
}

/** Key of {@linkcode PlanOptions.specHashes}. */
export function hashKey(deployment: string, service: string): string {
  return `${deployment}_${service}`;
}

/**
 * The next steps that move `observed` towards `desired`, in the order they are
 * to run — this is the only place that decides it; the executor runs them one
 * after another as given: removals of unwanted containers first (they may hold
 * ports the new ones need), then per service pull → remove → create, or start.
 */
export function plan(
  desired: ReadonlyMap<string, DesiredEntry>,
  observed: readonly ObservedContainer[],
  options: PlanOptions,
): Action[] {
  const byDeployment = groupBy(observed, (c) => c.deployment);
  const deployments = new Set([
    ...desired.keys(),
    ...byDeployment.keys(),
    ...(options.networks?.keys() ?? []),
  ]);
  const cleanup: Action[] = [];
  const work: Action[] = [];
  const networks: Action[] = [];
  for (const deployment of [...deployments].sort()) {
    const containers = byDeployment.get(deployment) ?? [];
    const entry = desired.get(deployment);
    if (entry === undefined) {
      if (isRemovable(options.removable, deployment)) {
        for (const c of sortById(containers)) {
          cleanup.push(remove(c, "deployment-removed"));
        }
        // After its containers: podman refuses to remove a network in use.
        for (const network of [...(options.networks?.get(deployment) ?? [])].sort()) {
          networks.push({
            action: "remove-network",
            deployment,
            service: "",
            reason: "deployment-removed",
            network,
          });
        }
      }
      continue;
    }
    if (entry.kind === "invalid" || options.blocked?.has(deployment)) continue;
    planDeployment(entry, containers, options.specHashes, cleanup, work, options.deviceId);
  }
  return [...cleanup, ...work, ...networks];
}

function planDeployment(
  entry: Extract<DesiredEntry, { kind: "valid" }>,
  containers: readonly ObservedContainer[],
  hashes: ReadonlyMap<string, string>,
  cleanup: Action[],
  work: Action[],
  deviceId: string | undefined,
): void {
  const { deployment, revision } = entry;
  const services = entry.state.score.services;
  const wanted = new Set(services.map((s) => s.name));
  const byService = groupBy(containers, (c) => c.service);
  const jobs = jobServices(services);
  const current = (name: string) => {
    const hash = hashes.get(hashKey(deployment, name));
    const list = byService.get(name) ?? [];
    return hash === undefined ? undefined : currentContainer(list, hash, jobs.has(name), revision);
  };
  for (const [service, list] of [...byService].sort(([a], [b]) => (a < b ? -1 : 1))) {
    if (!wanted.has(service)) {
      for (const c of sortById(list)) cleanup.push(remove(c, "service-removed"));
    }
  }
  for (const service of services) {
    const hash = hashes.get(hashKey(deployment, service.name));
    if (hash === undefined) {
      throw new Error(
        `Cannot plan service "${service.name}" of deployment "${deployment}": its spec hash is missing`,
      );
    }
    const base = { deployment, service: service.name };
    const list = byService.get(service.name) ?? [];
    const keeper = list.length > 0 ? pickKeeper(list, hash, service.restart) : undefined;
    for (const c of sortById(list)) {
      if (c !== keeper) cleanup.push(remove(c, "duplicate"));
    }
    const pullAndCreate = (reason: ActionReason) => {
      work.push({
        action: "pull",
        ...base,
        reason,
        image: qualifiedImageName(service.image),
        policy: isAlwaysPull(service.image) ? "always" : "if-missing",
      });
      if (keeper) work.push(remove(keeper, reason));
      work.push({
        action: "create",
        ...base,
        reason,
        revision,
        spec: toContainerSpec(
          deployment,
          revision,
          service,
          hash,
          deviceId,
          fileMountsOf(deviceId, deployment, entry.state, service, hash),
          entry.state.deployment_revision,
        ),
      });
    };
    // Nothing starts before what it depends on (ordering.ts); events bring it back later.
    const ready = () => unmetDependencies(service, current).length === 0;
    if (keeper === undefined) {
      if (ready()) pullAndCreate("missing");
    } else if (keeper.specHash !== hash) {
      if (ready()) pullAndCreate("spec-changed");
    } else if (jobs.has(service.name) && keeper.revision !== revision) {
      // A job runs once per revision, even when its own spec did not change.
      if (ready()) pullAndCreate("new-revision");
    } else if (
      !isSatisfied(keeper, hash, service.restart) && STARTABLE.has(keeper.state) && ready()
    ) {
      work.push({
        action: "start",
        ...base,
        reason: "stopped",
        containerId: keeper.id,
        name: keeper.name,
      });
    }
    // Otherwise running, or transitional (stopping, removing, paused): a
    // runtime event will bring this deployment back for another look.
  }
}

function remove(c: ObservedContainer, reason: ActionReason): RemoveAction {
  return {
    action: "remove",
    deployment: c.deployment,
    service: c.service,
    reason,
    containerId: c.id,
    name: c.name,
  };
}

function isRemovable(removable: PlanOptions["removable"], deployment: string): boolean {
  return typeof removable === "boolean" ? removable : removable.has(deployment);
}

function sortById(list: readonly ObservedContainer[]): ObservedContainer[] {
  return [...list].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
}

function groupBy<T>(items: readonly T[], key: (t: T) => string): Map<string, T[]> {
  const out = new Map<string, T[]>();
  for (const item of items) {
    const k = key(item);
    const list = out.get(k);
    if (list) list.push(item);
    else out.set(k, [item]);
  }
  return out;
}
