/**
 * NATS KV bucket names, key formats and container labels: the literals that
 * agents, the operator and outside clients must agree on byte for byte.
 *
 * @module
 */

import { assertName } from "./names.ts";

/** Bucket holding `<device>.<deployment>` → {@linkcode DesiredState}. */
export const BUCKET_DESIRED_STATE = "desired-state";
/** Bucket holding `<device>` → {@linkcode AgentStatus}. */
export const BUCKET_AGENT_STATUS = "agent-status";
/** Bucket holding `<name>` → {@linkcode DeploymentManifest}. */
export const BUCKET_DEPLOYMENTS = "deployments";
/**
 * Bucket holding `<device>` → {@linkcode DeviceRegistration}: the operator's
 * device registry, whose labels decide label-selector targeting.
 */
export const BUCKET_DEVICES = "devices";

/**
 * Bucket holding `<deployment>` → the state of its latest rollout (batch,
 * updated devices, failures). Operator-only: it lives in the operator's
 * account, which devices cannot reach (docs/security.md).
 */
export const BUCKET_ROLLOUTS = "rollouts";
/**
 * Bucket holding `<deployment>.<revision>` → one revision of a deployment
 * (its manifest, when, and what changed), so any earlier one can be restored.
 * Operator-only, like {@linkcode BUCKET_ROLLOUTS}.
 */
export const BUCKET_DEPLOYMENT_HISTORY = "deployment-history";
/**
 * Bucket holding the operator services' leases: `serve` → which `operator
 * serve` process may write desired state. Operator-only.
 */
export const BUCKET_OPERATOR_LEASES = "operator-leases";
/** Key of the lease that lets one `operator serve` act on the fleet. */
export const SERVE_LEASE_KEY = "serve";

/** Key of a rollout's state in {@linkcode BUCKET_ROLLOUTS}: `"<deployment>"`. */
export function rolloutKey(deployment: string): string {
  return assertName("deployment name", deployment);
}

/** Key of one revision in {@linkcode BUCKET_DEPLOYMENT_HISTORY}: `"<deployment>.<revision>"`. */
export function historyKey(deployment: string, revision: number): string {
  if (!Number.isSafeInteger(revision) || revision < 1) {
    throw new RangeError(`Invalid deployment revision ${revision}: expected a whole number >= 1`);
  }
  return `${assertName("deployment name", deployment)}.${revision}`;
}

/** The key filter of one deployment's revisions in {@linkcode BUCKET_DEPLOYMENT_HISTORY}. */
export function historyFilter(deployment: string): string {
  return `${assertName("deployment name", deployment)}.*`;
}

/**
 * Bucket holding `<secret name>` → {@linkcode SecretRecord}: the operator's
 * secret store, every value sealed to the operator's own xkey. Operator-only.
 */
export const BUCKET_SECRETS = "secrets";

/** Key of one deployment's desired state on one device: `"<device>.<deployment>"`. */
export function desiredStateKey(device: string, deployment: string): string {
  return `${assertName("device id", device)}.${assertName("deployment name", deployment)}`;
}

/** The two halves of a desired-state key. */
export interface DesiredStateKey {
  device: string;
  deployment: string;
}

/**
 * Splits a desired-state key into device and deployment, validating both.
 *
 * @throws {InvalidDesiredStateKeyError} when the key is not `<device>.<deployment>`.
 */
export function parseDesiredStateKey(key: string): DesiredStateKey {
  const parts = key.split(".");
  if (parts.length !== 2) {
    throw new InvalidDesiredStateKeyError(
      key,
      `expected "<device>.<deployment>", found ${parts.length} dot-separated part(s)`,
    );
  }
  try {
    return {
      device: assertName("device id", parts[0]),
      deployment: assertName("deployment name", parts[1]),
    };
  } catch (e) {
    throw new InvalidDesiredStateKeyError(key, (e as Error).message, { cause: e });
  }
}

/** Thrown by {@linkcode parseDesiredStateKey}. */
export class InvalidDesiredStateKeyError extends Error {
  override name = "InvalidDesiredStateKeyError";
  /** The rejected key. */
  readonly key: string;
  constructor(key: string, problem: string, options?: ErrorOptions) {
    super(`Invalid desired-state key ${JSON.stringify(key)}: ${problem}`, options);
    this.key = key;
  }
}

/** The key filter a device watches in {@linkcode BUCKET_DESIRED_STATE}: `"<device>.>"`. */
export function desiredStateFilter(device: string): string {
  return `${assertName("device id", device)}.>`;
}

/** Key of a device's status: `"<device>"`. */
export function statusKey(device: string): string {
  return assertName("device id", device);
}

/** Key of a device's registry entry in {@linkcode BUCKET_DEVICES}: `"<device>"`. */
export function deviceKey(device: string): string {
  return assertName("device id", device);
}

/** Key of a deployment manifest: `"<name>"`. */
export function deploymentKey(name: string): string {
  return assertName("deployment name", name);
}

/** Container labels Drover sets on every container it manages. */
export const LABELS = {
  /** Always `"true"`; marks a container as Drover's to create, replace and remove. */
  managed: "drover.managed",
  /** Deployment name. */
  deployment: "drover.deployment",
  /** Service name within the deployment. */
  service: "drover.service",
  /**
   * The deployment revision the container was created from (what `apply`
   * printed, the one `status` and events show), or the desired-state KV
   * revision when the desired state carries none.
   */
  revision: "drover.revision",
  /** The desired-state KV revision the container was created from (the agent's bookkeeping). */
  kvRevision: "drover.kv-revision",
  /** Hash of the canonical service spec; a different hash means "replace". */
  specHash: "drover.spec-hash",
  /**
   * Id of the device whose agent owns the container. Several agents may share one podman
   * host; each touches only its own containers (see docs/architecture.md, "Ownership").
   */
  device: "drover.device",
} as const;

/** Value of the {@linkcode LABELS.managed} label. */
export const MANAGED_LABEL_VALUE = "true";

/** Name of the container running `service` of `deployment`: `"<deployment>_<service>"`. */
export function containerName(deployment: string, service: string): string {
  return `${assertName("deployment name", deployment)}_${assertName("service name", service)}`;
}
