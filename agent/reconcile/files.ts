/**
 * Configs and secrets on the device: which runtime secrets a deployment's
 * containers mount, what they are named, and why a deployment that uses
 * secrets cannot run here. Pure: the executor opens and creates them, the
 * reconciler removes the ones no longer wanted.
 *
 * Each runtime secret's name carries the device, the deployment and what
 * fixes its value — a secret's version, a config's service spec hash (which
 * covers the config's content) — so a name never changes value and a new
 * value is a new name: the old containers keep theirs until replaced, and
 * are never left pointing at a removed one (podman cannot restart a
 * container whose secret is gone; docs/podman-api.md).
 *
 * @module
 */

import {
  configMounts,
  type DesiredState,
  type PodmanService,
  secretMounts,
  secretNamesOf,
} from "@drover/contracts";
import type { FileMountSpec } from "../runtime/runtime.ts";
import type { PolicyViolation } from "./policy.ts";

/** Prefix of every runtime secret of `deployment` on `device`. */
export function runtimeSecretPrefix(device: string | undefined, deployment: string): string {
  return `drover_${device ?? "local"}_${deployment}_`;
}

/**
 * The files (and env secrets) of one service, with runtime names.
 * `specHash` is the service's spec hash (it covers its configs' content).
 */
export function fileMountsOf(
  device: string | undefined,
  deployment: string,
  state: DesiredState,
  service: PodmanService,
  specHash: string,
): FileMountSpec[] {
  const prefix = runtimeSecretPrefix(device, deployment);
  const configs = configMounts(service).map((m): FileMountSpec => ({
    runtimeName: `${prefix}config_${m.source}_${specHash.slice(0, 16)}`,
    kind: "config",
    type: "file",
    target: m.target,
    ...(m.type === "file" ? { mode: m.mode, uid: m.uid, gid: m.gid } : {}),
    source: { content: state.score.configs?.[m.source]?.content ?? "" },
  }));
  const secrets = secretMounts(service).map((m): FileMountSpec => {
    const sealed = state.secrets?.find((s) => s.name === m.source);
    const version = sealed?.version ?? 0;
    return {
      runtimeName: `${prefix}secret_${m.source}_v${version}`,
      kind: "secret",
      type: m.type,
      target: m.target,
      ...(m.type === "file" ? { mode: m.mode, uid: m.uid, gid: m.gid } : {}),
      source: {
        name: m.source,
        version,
        sealed: sealed?.sealed ?? "",
        sender: sealed?.sender ?? "",
      },
    };
  });
  return [...configs, ...secrets];
}

/** Runtime secret names every service of `state` mounts. */
export function wantedRuntimeSecrets(
  device: string | undefined,
  deployment: string,
  state: DesiredState,
  specHashOf: (service: string) => string | undefined,
): Set<string> {
  const out = new Set<string>();
  for (const service of state.score.services) {
    const hash = specHashOf(service.name) ?? "";
    for (const f of fileMountsOf(device, deployment, state, service, hash)) out.add(f.runtimeName);
  }
  return out;
}

/**
 * Why this device cannot run `state`'s secrets (empty: it can): a secret
 * the value does not carry, one the operator could not seal (its reason),
 * no key of its own, or one sealed to another key than its own.
 *
 * @param ownKey this device's xkey public key; undefined without `[secrets] key`.
 */
export function secretProblems(state: DesiredState, ownKey: string | undefined): PolicyViolation[] {
  const names = secretNamesOf(state.score);
  if (names.length === 0) return [];
  const problem = (message: string): PolicyViolation => ({ rule: "secrets", message });
  if (ownKey === undefined) {
    return [problem(
      `secrets: this deployment uses secret(s) ${names.join(", ")} but this device has no ` +
        'sealing key ([secrets] key in the agent config, written by "operator device add")',
    )];
  }
  const out: PolicyViolation[] = [];
  for (const name of names) {
    const sealed = state.secrets?.find((s) => s.name === name);
    if (sealed === undefined) {
      out.push(problem(`secrets: secret "${name}" is not in the desired state`));
    } else if (sealed.problem !== undefined) {
      out.push(problem(`secrets: ${sealed.problem}`));
    } else if (sealed.sealed === undefined || sealed.sender === undefined) {
      out.push(problem(`secrets: secret "${name}" arrived without its sealed value`));
    } else if (sealed.recipient !== ownKey) {
      out.push(problem(
        `secrets: secret "${name}" was sealed to key ${sealed.recipient ?? "?"}, not this ` +
          `device's ${ownKey} (re-provisioned? the operator re-seals once the registry has it)`,
      ));
    }
  }
  return out;
}
