/**
 * The container-runtime boundary. The reconciler, status reporting and the
 * NATS side only ever see this interface; podman is one implementation
 * (`runtime/podman/`), an in-memory stand-in for fleet benchmarks is another.
 *
 * @module
 */

import type { PortMapping, RestartPolicy, VolumeMount } from "@drover/contracts";

/** Everything needed to create one container. Built by the planner from a service spec. */
export interface ContainerSpec {
  /** `<deployment>_<service>`. */
  name: string;
  image: string;
  command?: string[];
  entrypoint?: string[];
  env: Record<string, string>;
  ports: PortMapping[];
  volumes: VolumeMount[];
  restart: RestartPolicy;
  /** User labels plus Drover's own (`drover.*`). */
  labels: Record<string, string>;
}

/** A container Drover manages, as the runtime reports it now. */
export interface ObservedContainer {
  id: string;
  name: string;
  deployment: string;
  service: string;
  /** Desired-state revision it was created from (label `drover.revision`). */
  revision: number;
  /** Label `drover.spec-hash`. */
  specHash: string;
  /** Runtime state: `running`, `exited`, `created`, `paused`, `stopped`, … */
  state: string;
  image: string;
  restarts?: number;
  labels: Record<string, string>;
}

/** Credentials for pulling from one registry. */
export interface RegistryAuth {
  username?: string;
  password?: string;
  /** Verify the registry's TLS certificate (default true). */
  tlsVerify: boolean;
}

/**
 * Something changed in the runtime. Events only say "look again at this
 * deployment" (or everything); the reconciler re-observes before acting.
 */
export type RuntimeEvent =
  | { kind: "container"; action: string; deployment: string; service?: string }
  | { kind: "resync"; reason: string };

/** The operations the reconciler needs from a container runtime. All idempotent where possible. */
export interface ContainerRuntime {
  /** Every container labelled `drover.managed=true`, in any state. */
  listManaged(signal?: AbortSignal): Promise<ObservedContainer[]>;
  /** True when `image` is present locally. */
  hasImage(image: string, signal?: AbortSignal): Promise<boolean>;
  /** Pulls `image`; rejects with the registry's message on failure. */
  pullImage(image: string, auth: RegistryAuth | undefined, signal?: AbortSignal): Promise<void>;
  /** Creates (does not start) a container; returns its id. */
  createContainer(spec: ContainerSpec, signal?: AbortSignal): Promise<string>;
  /** Starts a container; already running is success. */
  startContainer(id: string, signal?: AbortSignal): Promise<void>;
  /** Stops a container; already stopped is success. */
  stopContainer(id: string, timeoutSeconds: number, signal?: AbortSignal): Promise<void>;
  /** Force-removes a container; already gone is success. */
  removeContainer(id: string, signal?: AbortSignal): Promise<void>;
  /**
   * Changes to managed containers until `signal` aborts. Survives the
   * runtime going away: it yields a `resync` event once it is back.
   */
  watchEvents(signal: AbortSignal): AsyncIterable<RuntimeEvent>;
}
