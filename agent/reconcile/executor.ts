/**
 * The executor: runs a plan's actions one after another, in the order `plan`
 * gave them, each through the one function its kind maps to (balena
 * supervisor's executor map, keyed on `action`). Every action is idempotent
 * against the runtime, so a crash between two of them is converged from on
 * the next pass.
 *
 * @module
 */

import type { Logger } from "@logtape/logtape";
import {
  ContainerNameConflictError,
  type ContainerRuntime,
  type ContainerSpec,
  ImageMissingError,
} from "../runtime/runtime.ts";
import type { DeviceEventInput } from "./events.ts";
import type { ImageManager, PullObserver } from "./image_manager.ts";
import type { Action } from "./plan.ts";

/** What one pass of one deployment carries from action to action. */
export interface ExecutionContext {
  signal: AbortSignal;
  /** Names that hit a conflict in this pass (the second conflict is an error). */
  conflicts: Set<string>;
  /** Logger with the deployment and revision. */
  log: Logger;
  /** Deployment revision being applied, for events. */
  revision?: number | undefined;
}

type Handler<A extends Action> = (action: A, context: ExecutionContext) => Promise<void>;

/** One function per action kind. */
export type ActionHandlers = { [K in Action["action"]]: Handler<Extract<Action, { action: K }>> };

/** What the executor drives. */
export interface ExecutorDeps {
  runtime: ContainerRuntime;
  images: ImageManager;
  /** Told when a pull starts and ends (status "pulling", first-pass accounting). */
  onPull: PullObserver;
  /** Told what was done (the device's event ring); `containerId` for removals. */
  onEvent?: (event: DeviceEventInput, containerId?: string) => void;
  /**
   * Opens a secret sealed to this device (in memory only); undefined when it
   * cannot (another key, tampered). Absent: the device has no sealing key.
   */
  openSecret?: (sealed: string, sender: string) => Uint8Array | undefined;
}

/**
 * Creates the runtime secrets `spec` mounts (configs and opened secrets) that
 * are not there yet. A secret's plaintext lives only in this call's memory
 * on its way to podman, and is zeroed after.
 */
async function ensureFiles(
  spec: ContainerSpec,
  deps: ExecutorDeps,
  signal: AbortSignal,
): Promise<void> {
  for (const file of spec.files ?? []) {
    const source = file.source;
    let data: Uint8Array;
    if ("content" in source) {
      data = new TextEncoder().encode(source.content);
    } else {
      const opened = deps.openSecret?.(source.sealed, source.sender);
      if (opened === undefined) {
        throw new Error(
          `Cannot open secret "${source.name}" version ${source.version}: it was not sealed ` +
            "to this device's key (or was changed on the way)",
        );
      }
      data = opened;
    }
    try {
      await deps.runtime.ensureSecret(file.runtimeName, data, signal);
    } finally {
      data.fill(0);
    }
  }
}

/** Creates the handler map of {@linkcode Executor}. */
export function actionHandlers(deps: ExecutorDeps): ActionHandlers {
  const { runtime, images } = deps;
  const emit = (event: DeviceEventInput, containerId?: string) =>
    deps.onEvent?.(event, containerId);
  const at = (action: Action, revision: number | undefined) => ({
    deployment: action.deployment,
    service: action.service,
    ...(revision !== undefined ? { revision } : {}),
  });
  return {
    async pull(action, { signal, log, revision }) {
      let pulled = false;
      try {
        await images.ensure(action, signal, log, (a, active) => {
          if (active) pulled = true;
          deps.onPull(a, active);
        });
      } catch (err) {
        if (!signal.aborted) {
          emit({
            ...at(action, revision),
            kind: "image_pull_failed",
            message: err instanceof Error ? err.message : String(err),
          });
        }
        throw err;
      }
      if (pulled) {
        emit({ ...at(action, revision), kind: "image_pulled", message: `pulled ${action.image}` });
      }
    },

    async create(action, { signal, conflicts, log, revision }) {
      const { spec } = action;
      // Idempotent: the network and named volumes exist before the container that needs them.
      if (spec.network?.mode === "bridge") {
        await runtime.ensureNetwork(spec.network.name, spec.network.labels, signal);
      }
      for (const volume of spec.volumes) {
        if (volume.type === "volume") {
          await runtime.ensureVolume(volume.source, spec.volumeLabels ?? {}, signal);
        }
      }
      await ensureFiles(spec, deps, signal);
      let id: string;
      try {
        id = await runtime.createContainer(spec, signal);
      } catch (err) {
        if (err instanceof ImageMissingError) {
          // Removed behind our back since we last looked: the next round pulls it.
          images.forget(spec.image);
          return;
        }
        if (err instanceof ContainerNameConflictError) {
          // Once: a container we do not see yet (a crash left one, a list raced a
          // create). Twice in one pass: the name belongs to something we do not manage.
          if (!conflicts.has(spec.name)) {
            conflicts.add(spec.name);
            return;
          }
          throw new Error(
            `Cannot create container "${spec.name}": the name is taken by a container ` +
              "this agent does not manage (not Drover's, or another device's); remove or rename it",
            { cause: err },
          );
        }
        throw err;
      }
      await runtime.startContainer(id, signal);
      log.info("Created and started container {container} ({reason})", {
        container: spec.name,
        reason: action.reason,
        image: spec.image,
      });
      const replaced = action.reason === "spec-changed";
      emit({
        ...at(action, revision),
        kind: replaced ? "container_replaced" : "container_created",
        message: `${replaced ? "replaced" : "created and started"} container ${spec.name} ` +
          `(${action.reason})`,
      });
    },

    async start(action, { signal, log, revision }) {
      // If it went away or started meanwhile, the next round sees that.
      if (!(await runtime.startStopped(action.containerId, signal))) return;
      log.info("Started container {container} ({reason})", {
        container: action.name,
        reason: action.reason,
      });
      emit({
        ...at(action, revision),
        kind: "container_started",
        message: `started container ${action.name} (${action.reason})`,
      });
    },

    async remove(action, { signal, log, revision }) {
      await runtime.removeContainer(action.containerId, signal);
      emit({
        ...at(action, revision),
        kind: "container_removed",
        message: `removed container ${action.name} (${action.reason})`,
      }, action.containerId);
      log.info("Removed container {container} ({reason})", {
        container: action.name,
        reason: action.reason,
      });
    },

    async "remove-network"(action, { signal, log }) {
      await runtime.removeNetwork(action.network, signal);
      log.info("Removed network {network} ({reason})", {
        network: action.network,
        reason: action.reason,
      });
    },
  };
}

/** Runs plans. See the module documentation. */
export class Executor {
  readonly #handlers: ActionHandlers;

  constructor(handlers: ActionHandlers) {
    this.#handlers = handlers;
  }

  /** Runs `actions` in order; the first failure stops the plan (the next pass plans again). */
  async run(actions: readonly Action[], context: ExecutionContext): Promise<void> {
    for (const action of actions) {
      context.signal.throwIfAborted();
      await this.#perform(action, context);
    }
  }

  #perform<A extends Action>(action: A, context: ExecutionContext): Promise<void> {
    const handler = this.#handlers[action.action] as Handler<A>;
    return handler(action, {
      ...context,
      log: context.log.with({ service: action.service }),
    });
  }
}
