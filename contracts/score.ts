/**
 * The deployment score: what should run. Today one score type, `PodmanV0`, a
 * set of podman services described in compose-like terms.
 *
 * Scores are written by people, so their objects are strict: an unknown key
 * (a typo such as `enviroment`, or a feature this agent does not know) is an
 * error rather than silently ignored.
 *
 * @module
 */

import { z } from "zod";
import { nameProblem } from "./names.ts";
import { parseImageReference } from "./image.ts";
import { composeDuration } from "./duration.ts";
import { dependenciesOf, parsedString, WORKLOAD_FIELDS } from "./workload.ts";

/** Schema for a device id, deployment name or service name. */
export const Name = z.string().superRefine((value, ctx) => {
  const problem = nameProblem(value);
  if (problem) {
    ctx.addIssue({ code: "custom", message: `invalid name ${JSON.stringify(value)}: ${problem}` });
  }
});

/** Restart policies, as in compose. */
export const RestartPolicy = z.enum(["always", "on-failure", "unless-stopped", "no"]);
/** A restart policy. */
export type RestartPolicy = z.infer<typeof RestartPolicy>;

/** A published port, parsed from compose short syntax. */
export interface PortMapping {
  /** Host address to bind, when one was given. */
  hostIp?: string;
  /** Host port; absent means "let podman choose". */
  hostPort?: number;
  /** Port inside the container. */
  containerPort: number;
  /** Transport protocol. */
  protocol: "tcp" | "udp";
}

function parsePortNumber(text: string, what: string): number | string {
  if (!/^[0-9]{1,5}$/.test(text)) return `${what} ${JSON.stringify(text)} is not a number`;
  const n = Number(text);
  if (n < 1 || n > 65535) return `${what} ${n} is out of range 1-65535`;
  return n;
}

const IPV4 = /^(25[0-5]|2[0-4][0-9]|1?[0-9]?[0-9])(\.(25[0-5]|2[0-4][0-9]|1?[0-9]?[0-9])){3}$/;
const IPV6 = /^[0-9a-fA-F:]+$/;

/**
 * Parses `"[host_ip:][host_port:]container_port[/tcp|udp]"`; IPv6 host
 * addresses are written in brackets (`"[::1]:8080:80"`). Returns a message on
 * error.
 */
export function parsePortMapping(spec: string): PortMapping | string {
  const bad = (why: string) => `invalid port ${JSON.stringify(spec)}: ${why}`;
  let rest = spec;
  let protocol: "tcp" | "udp" = "tcp";
  const slash = rest.indexOf("/");
  if (slash >= 0) {
    const proto = rest.slice(slash + 1);
    if (proto !== "tcp" && proto !== "udp") {
      return bad(`protocol must be tcp or udp, got "${proto}"`);
    }
    protocol = proto;
    rest = rest.slice(0, slash);
  }
  let hostIp: string | undefined;
  if (rest.startsWith("[")) {
    const close = rest.indexOf("]:");
    if (close < 0) return bad("an IPv6 host address must be written as [addr]:host:container");
    hostIp = rest.slice(1, close);
    if (!IPV6.test(hostIp)) return bad(`"${hostIp}" is not an IPv6 address`);
    rest = rest.slice(close + 2);
  }
  const parts = rest.split(":");
  if (parts.length > 3 || (hostIp !== undefined && parts.length !== 2)) {
    return bad('expected "[host_ip:][host_port:]container_port[/protocol]"');
  }
  if (parts.length === 3) {
    hostIp = parts.shift()!;
    if (!IPV4.test(hostIp)) return bad(`"${hostIp}" is not an IPv4 address`);
  }
  const containerPort = parsePortNumber(parts.pop()!, "container port");
  if (typeof containerPort === "string") return bad(containerPort);
  let hostPort: number | undefined;
  if (parts.length === 1) {
    const p = parsePortNumber(parts[0]!, "host port");
    if (typeof p === "string") return bad(p);
    hostPort = p;
  }
  return {
    ...(hostIp !== undefined ? { hostIp } : {}),
    ...(hostPort !== undefined ? { hostPort } : {}),
    containerPort,
    protocol,
  };
}

/** A volume, parsed from compose short syntax. */
export type VolumeMount =
  | { type: "bind"; source: string; target: string; readOnly: boolean }
  | { type: "volume"; source: string; target: string; readOnly: boolean };

const VOLUME_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;

function pathProblem(path: string, what: string): string | undefined {
  if (!path.startsWith("/")) return `${what} "${path}" must be an absolute path`;
  if (path.split("/").some((seg) => seg === "..")) return `${what} "${path}" must not contain ".."`;
  if (/[\0\n]/.test(path)) return `${what} must not contain NUL or newline`;
  return undefined;
}

/**
 * Parses `"/host/path:/container/path[:ro|rw]"` (a bind mount) or
 * `"name:/container/path[:ro|rw]"` (a named volume). Returns a message on error.
 */
export function parseVolumeMount(spec: string): VolumeMount | string {
  const bad = (why: string) => `invalid volume ${JSON.stringify(spec)}: ${why}`;
  const parts = spec.split(":");
  if (parts.length < 2 || parts.length > 3) {
    return bad('expected "/host/path:/container/path[:ro]" or "name:/container/path[:ro]"');
  }
  // The length check above leaves two or three parts.
  const [source = "", target = "", mode = "rw"] = parts;
  if (mode !== "ro" && mode !== "rw") return bad(`mode must be "ro" or "rw", got "${mode}"`);
  const targetProblem = pathProblem(target, "container path");
  if (targetProblem) return bad(targetProblem);
  const readOnly = mode === "ro";
  if (source.startsWith("/")) {
    const sourceProblem = pathProblem(source, "host path");
    if (sourceProblem) return bad(sourceProblem);
    return { type: "bind", source, target, readOnly };
  }
  if (!VOLUME_NAME.test(source)) {
    return bad(
      `"${source}" is neither an absolute host path nor a volume name ([A-Za-z0-9][A-Za-z0-9_.-]*)`,
    );
  }
  return { type: "volume", source, target, readOnly };
}

/** Largest content of one score-level config, in bytes of its text (compose's inline `content`). */
export const MAX_CONFIG_BYTES = 64 * 1024;
/** Largest number of configs in one score. */
export const MAX_CONFIGS = 64;
/** Largest total content of a score's configs: desired state must fit one KV value (1 MiB). */
export const MAX_CONFIGS_TOTAL_BYTES = 256 * 1024;
/** Default mode of a config file in the container (read-only for everyone). */
export const DEFAULT_CONFIG_MODE = "0444";
/** Default mode of a secret file in the container (read-only for its owner). */
export const DEFAULT_SECRET_MODE = "0400";
/** Where a secret file appears when its reference names no target (compose's rule). */
export const SECRETS_DIR = "/run/secrets";

const FILE_MODE = /^0?[0-7]{3}$/;

/** Schema of the name of a config or of a secret in the operator's store: a DNS label. */
export const MountName = z.string().superRefine((value, ctx) => {
  const problem = nameProblem(value);
  if (problem) {
    ctx.addIssue({ code: "custom", message: `invalid name ${JSON.stringify(value)}: ${problem}` });
  }
});

/** A score-level config: a file's content, in compose's inline form. */
export const ConfigDefinition = z.strictObject({
  content: z.string().refine((s) => new TextEncoder().encode(s).length <= MAX_CONFIG_BYTES, {
    message: `config content must be at most ${MAX_CONFIG_BYTES} bytes`,
  }),
});
/** A score-level config. */
export type ConfigDefinition = z.infer<typeof ConfigDefinition>;

const mountTarget = z.string().max(4096).superRefine((value, ctx) => {
  const problem = pathProblem(value, "target");
  if (problem) ctx.addIssue({ code: "custom", message: problem });
});
const fileMode = z.string().regex(FILE_MODE, 'mode must be octal permissions such as "0444"');
/** Largest user or group id (Linux ids are 32-bit; -1 is "unset"). */
const MAX_OWNER_ID = 4_294_967_294;
/** A numeric user or group id; compose writes them as strings (`uid: "103"`). */
const fileOwnerId = z.union([
  z.string().regex(/^[0-9]{1,10}$/, 'expected a numeric id such as "1000"'),
  z.int().min(0),
]).refine((id) => Number(id) <= MAX_OWNER_ID, { message: `ids go up to ${MAX_OWNER_ID}` });

/** A service's config reference: the config's name, or compose's long form. */
export const ServiceConfigRef = z.union([
  MountName,
  z.strictObject({
    source: MountName,
    /** Absolute path in the container (default `/<source>`). */
    target: mountTarget.optional(),
    /** Octal file mode (default `"0444"`); the file is always read-only. */
    mode: fileMode.optional(),
    /** Owner of the file (default: the service's numeric `user`, else 0). */
    uid: fileOwnerId.optional(),
    /** Group of the file (default: the service's numeric group, else 0). */
    gid: fileOwnerId.optional(),
  }),
]);
/** A service's config reference. */
export type ServiceConfigRef = z.infer<typeof ServiceConfigRef>;

/** A service's secret reference: the secret's name, or compose's long form. */
export const ServiceSecretRef = z.union([
  MountName,
  z.strictObject({
    source: MountName,
    /**
     * `file`: an absolute path, or a file name under `/run/secrets` (default
     * `/run/secrets/<source>`); `env`: the environment variable's name.
     */
    target: z.string().max(4096).optional(),
    /** Octal file mode (default `"0400"`); files only. */
    mode: fileMode.optional(),
    /** Owner of the file (default: the service's numeric `user`, else 0); files only. */
    uid: fileOwnerId.optional(),
    /** Group of the file (default: the service's numeric group, else 0); files only. */
    gid: fileOwnerId.optional(),
    /** `file` (default) or `env`, for software that reads only its environment. */
    type: z.enum(["file", "env"]).optional(),
  }).superRefine((ref, ctx) => {
    if (ref.type === "env") {
      if (ref.target === undefined || !ENV_NAME.test(ref.target)) {
        ctx.addIssue({
          code: "custom",
          path: ["target"],
          message: "a secret of type env needs target: the environment variable's name " +
            "([A-Za-z_][A-Za-z0-9_]*)",
        });
      }
      for (const key of ["mode", "uid", "gid"] as const) {
        if (ref[key] !== undefined) {
          ctx.addIssue({ code: "custom", path: [key], message: `an env secret has no ${key}` });
        }
      }
      return;
    }
    if (ref.target !== undefined) {
      const problem = ref.target.startsWith("/")
        ? pathProblem(ref.target, "target")
        : /^[A-Za-z0-9_.-]+$/.test(ref.target) && ref.target !== "." && ref.target !== ".."
        ? undefined
        : `target "${ref.target}" must be an absolute path or a file name under ${SECRETS_DIR}`;
      if (problem) ctx.addIssue({ code: "custom", path: ["target"], message: problem });
    }
  }),
]);
/** A service's secret reference. */
export type ServiceSecretRef = z.infer<typeof ServiceSecretRef>;

/** A config or secret reference with compose's defaults applied. */
export type FileMount =
  | {
    kind: "config" | "secret";
    source: string;
    type: "file";
    target: string;
    mode: number;
    uid: number;
    gid: number;
  }
  | { kind: "secret"; source: string; type: "env"; target: string };

/**
 * Who owns a mounted file unless the reference says: the service's `user`
 * when it is numeric (`"1000"`, `"1000:1000"`), so a service that does not
 * run as root can read its own 0400 secret; else root. A user given by name
 * is resolved inside the image, which the device does not do for files: such
 * a service names `uid`/`gid` on the reference (docs/workloads.md).
 */
export function defaultFileOwner(user: string | undefined): { uid: number; gid: number } {
  const [name, group] = (user ?? "").split(":");
  const id = (text: string | undefined) => /^[0-9]+$/.test(text ?? "") ? Number(text) : 0;
  return { uid: id(name), gid: id(group) };
}

type FileOwnerRef = { uid?: string | number | undefined; gid?: string | number | undefined };

function ownerOf(ref: FileOwnerRef, user: string | undefined): { uid: number; gid: number } {
  const fallback = defaultFileOwner(user);
  return {
    uid: ref.uid === undefined ? fallback.uid : Number(ref.uid),
    gid: ref.gid === undefined ? fallback.gid : Number(ref.gid),
  };
}

/** A service's config references with defaults applied: target `/<source>`, mode 0444. */
export function configMounts(
  service: { configs?: ServiceConfigRef[] | undefined; user?: string | undefined },
): FileMount[] {
  return (service.configs ?? []).map((ref) => {
    const long = typeof ref === "string" ? { source: ref } : ref;
    return {
      kind: "config",
      source: long.source,
      type: "file",
      target: long.target ?? `/${long.source}`,
      mode: parseInt(long.mode ?? DEFAULT_CONFIG_MODE, 8),
      ...ownerOf(long, service.user),
    };
  });
}

/**
 * A service's secret references with defaults applied: `/run/secrets/<source>`,
 * mode 0400, owned by the service's numeric user ({@linkcode defaultFileOwner}).
 */
export function secretMounts(
  service: { secrets?: ServiceSecretRef[] | undefined; user?: string | undefined },
): FileMount[] {
  return (service.secrets ?? []).map((ref): FileMount => {
    const long = typeof ref === "string" ? { source: ref } : ref;
    if (long.type === "env") {
      return { kind: "secret", source: long.source, type: "env", target: long.target ?? "" };
    }
    const target = long.target ?? long.source;
    return {
      kind: "secret",
      source: long.source,
      type: "file",
      target: target.startsWith("/") ? target : `${SECRETS_DIR}/${target}`,
      mode: parseInt(long.mode ?? DEFAULT_SECRET_MODE, 8),
      ...ownerOf(long, service.user),
    };
  });
}

/** Names of the operator's secrets a score references, sorted, each once. */
export function secretNamesOf(
  score: { services: readonly { secrets?: ServiceSecretRef[] | undefined }[] },
): string[] {
  const names = new Set<string>();
  for (const service of score.services) {
    for (const mount of secretMounts(service)) names.add(mount.source);
  }
  return [...names].sort();
}

/** Label prefix reserved for Drover's own labels. */
export const RESERVED_LABEL_PREFIX = "drover.";

const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
const LABEL_KEY = /^[A-Za-z0-9]([A-Za-z0-9._\/-]{0,251}[A-Za-z0-9])?$/;

/** Default grace between SIGTERM and SIGKILL when a container is replaced or removed. */
export const DEFAULT_STOP_TIMEOUT = "10s";
/** Longest `stop_timeout` accepted. */
export const MAX_STOP_TIMEOUT = "1h";

/**
 * How long a service without a health check must run before it counts as
 * ready, when its `min_ready` does not say (a service that dies after 2 s
 * must not pass as ready).
 */
export const DEFAULT_MIN_READY = "10s";

/** Health-check defaults, as in compose. */
export const HEALTHCHECK_DEFAULTS = {
  interval: "30s",
  timeout: "30s",
  retries: 3,
  start_period: "0s",
} as const;

function healthTestProblem(test: readonly string[]): string | undefined {
  const [kind, ...rest] = test;
  switch (kind) {
    case "NONE":
      return rest.length === 0 ? undefined : '["NONE"] takes nothing after "NONE"';
    case "CMD":
      if (rest.length === 0) return '["CMD", …] needs the command after "CMD"';
      return rest[0] === "" ? 'the command after "CMD" must not be empty' : undefined;
    case "CMD-SHELL":
      if (rest.length !== 1 || rest[0]?.trim() === "") {
        return '["CMD-SHELL", "…"] takes exactly one non-empty shell command';
      }
      return undefined;
    default:
      return `expected ["CMD", "prog", "arg", …], ["CMD-SHELL", "shell command"] or ["NONE"], ` +
        `got first element ${JSON.stringify(kind ?? null)}`;
  }
}

/**
 * A container health check, in compose's shape. Durations are compose
 * strings; `["NONE"]` disables a health check the image defines. A service
 * is healthy once a check passes, and unhealthy after `retries` failures in a
 * row (failures within `start_period` after the start do not count).
 */
export const HealthCheck = z.strictObject({
  /** `["CMD", prog, args…]`, `["CMD-SHELL", "shell command"]`, or `["NONE"]`. */
  test: z.array(z.string().max(4096)).min(1, 'expected e.g. ["CMD-SHELL", "wget -q -O- localhost"]')
    .max(256).superRefine((test, ctx) => {
      const problem = healthTestProblem(test);
      if (problem) ctx.addIssue({ code: "custom", message: problem });
    }),
  /** Time between checks (default 30s, at least 1s). */
  interval: composeDuration({ minMs: 1000, maxMs: 86_400_000 }).default(
    HEALTHCHECK_DEFAULTS.interval,
  ),
  /** Longest one check may take; a slower check counts as failed (default 30s). */
  timeout: composeDuration({ minMs: 1000, maxMs: 3_600_000 }).default(HEALTHCHECK_DEFAULTS.timeout),
  /** Failures in a row that make the service unhealthy (default 3). */
  retries: z.int().min(1, "retries must be at least 1").max(100, "retries must be at most 100")
    .default(HEALTHCHECK_DEFAULTS.retries),
  /** Time after start during which failures do not count (default 0s). */
  start_period: composeDuration({ minMs: 0, maxMs: 86_400_000 }).default(
    HEALTHCHECK_DEFAULTS.start_period,
  ),
});
/** A container health check (after defaults are applied). */
export type HealthCheck = z.infer<typeof HealthCheck>;

/** True when `check` runs a command (it is not `["NONE"]`). */
export function healthCheckRuns(check: HealthCheck | undefined): check is HealthCheck {
  return check !== undefined && check.test[0] !== "NONE";
}

/** One container of a deployment. Short-syntax strings stay strings on the wire. */
export const PodmanService = z.strictObject({
  name: Name,
  image: z.string().superRefine((value, ctx) => {
    const result = parseImageReference(value);
    if (typeof result === "string") {
      ctx.addIssue({
        code: "custom",
        message: `invalid image ${JSON.stringify(value)}: ${result}`,
      });
    }
  }),
  command: z.array(z.string().max(4096)).max(256).optional(),
  entrypoint: z.array(z.string().max(4096)).max(256).optional(),
  env: z.record(
    z.string().regex(ENV_NAME, "environment variable names must match [A-Za-z_][A-Za-z0-9_]*"),
    z.string().max(65536),
  ).optional(),
  ports: z.array(parsedString(parsePortMapping, 64)).max(128).optional(),
  volumes: z.array(parsedString(parseVolumeMount, 4096)).max(128).optional(),
  /** Score-level configs mounted read-only into the container (compose's `configs`). */
  configs: z.array(ServiceConfigRef).max(MAX_CONFIGS).optional(),
  /** Secrets of the operator's secret store, as files or env (compose's `secrets`). */
  secrets: z.array(ServiceSecretRef).max(64).optional(),
  restart: RestartPolicy.default("always"),
  labels: z.record(
    z.string().regex(LABEL_KEY, "label keys must be letters, digits and . _ / - (at most 253)")
      .refine((k) => !k.startsWith(RESERVED_LABEL_PREFIX), {
        message: `label keys starting with "${RESERVED_LABEL_PREFIX}" are reserved for Drover`,
      }),
    z.string().max(4096),
  ).optional(),
  /** Runs a command in the container to tell whether it works (compose's `healthcheck`). */
  healthcheck: HealthCheck.optional(),
  /**
   * Grace between SIGTERM and SIGKILL when the container is replaced or removed,
   * whole seconds (default {@linkcode DEFAULT_STOP_TIMEOUT}). No schema default: a
   * default would enter every service's spec hash and replace every running container
   * on an agent upgrade.
   */
  stop_timeout: composeDuration({ minMs: 0, maxMs: 3_600_000, wholeSeconds: true }).optional(),
  /**
   * How long the container must run (without a restart) before the service
   * counts as ready; a passing health check counts at once. Default
   * {@linkcode DEFAULT_MIN_READY}, applied by the agent (no schema default, as
   * for `stop_timeout`). The same name as the rollout section's batch setting.
   */
  min_ready: composeDuration({ minMs: 0, maxMs: 3_600_000 }).optional(),
  // Resources, process options, devices, log rotation, ordering (workload.ts).
  ...WORKLOAD_FIELDS,
});
/** One container of a deployment (after defaults are applied). */
export type PodmanService = z.infer<typeof PodmanService>;

/** Maximum number of services in one score. */
export const MAX_SERVICES = 64;

/** Score type `PodmanV0`: a set of podman services with unique names. */
export const PodmanV0Score = z.strictObject({
  type: z.literal("PodmanV0"),
  services: z.array(PodmanService).min(1).max(MAX_SERVICES).superRefine((services, ctx) => {
    const seen = new Map<string, number>();
    services.forEach((service, index) => {
      const first = seen.get(service.name);
      if (first !== undefined) {
        ctx.addIssue({
          code: "custom",
          path: [index, "name"],
          message: `duplicate service name "${service.name}" (also services[${first}])`,
        });
      } else {
        seen.set(service.name, index);
      }
    });
  }).superRefine((services, ctx) => {
    for (const issue of serviceRelationProblems(services)) {
      ctx.addIssue({ code: "custom", ...issue });
    }
  }),
  /** Files services mount with `configs:` (compose's top-level `configs`, inline form). */
  configs: z.record(MountName, ConfigDefinition).refine(
    (configs) => Object.keys(configs).length <= MAX_CONFIGS,
    { message: `at most ${MAX_CONFIGS} configs` },
  ).refine(
    (configs) =>
      Object.values(configs).reduce((n, c) => n + new TextEncoder().encode(c.content).length, 0) <=
        MAX_CONFIGS_TOTAL_BYTES,
    { message: `configs' content must total at most ${MAX_CONFIGS_TOTAL_BYTES} bytes` },
  ).optional(),
}).superRefine((score, ctx) => {
  score.services.forEach((service, index) => {
    (service.configs ?? []).forEach((ref, i) => {
      const source = typeof ref === "string" ? ref : ref.source;
      if (score.configs?.[source] === undefined) {
        ctx.addIssue({
          code: "custom",
          path: ["services", index, "configs", i],
          message: `config "${source}" is not defined in the score's configs`,
        });
      }
    });
    const targets = new Map<string, string>();
    for (const mount of [...configMounts(service), ...secretMounts(service)]) {
      const what = `${mount.kind} "${mount.source}"`;
      const other = targets.get(`${mount.type}:${mount.target}`);
      if (other !== undefined) {
        ctx.addIssue({
          code: "custom",
          path: ["services", index],
          message: `${what} and ${other} both mount at ${mount.target}`,
        });
      }
      targets.set(`${mount.type}:${mount.target}`, what);
    }
  });
});
/**
 * What one service may not say given the others: `depends_on` naming a missing
 * service, itself, or a cycle; `service_healthy` on a service without a health
 * check; `service_completed_successfully` on one that podman would restart (a
 * job has `restart: "no"`); published ports on the host network. Pure.
 */
export function serviceRelationProblems(
  services: readonly PodmanService[],
): Array<{ path: PropertyKey[]; message: string }> {
  const problems: Array<{ path: PropertyKey[]; message: string }> = [];
  const byName = new Map(services.map((s) => [s.name, s]));
  services.forEach((service, index) => {
    if (service.network_mode === "host" && (service.ports ?? []).length > 0) {
      problems.push({
        path: [index, "ports"],
        message: 'cannot publish ports with network_mode: "host" (the service binds host ' +
          "ports itself); remove ports or network_mode",
      });
    }
    for (const dep of dependenciesOf(service)) {
      const path = [index, "depends_on", dep.service];
      const target = byName.get(dep.service);
      if (dep.service === service.name) {
        problems.push({ path, message: `service "${service.name}" cannot depend on itself` });
      } else if (target === undefined) {
        problems.push({
          path,
          message: `no service "${dep.service}" in this score (services: ${
            [...byName.keys()].join(", ")
          })`,
        });
      } else if (dep.condition === "service_healthy" && !healthCheckRuns(target.healthcheck)) {
        problems.push({
          path,
          message: `condition service_healthy needs a healthcheck on service "${dep.service}"`,
        });
      } else if (dep.condition === "service_completed_successfully" && target.restart !== "no") {
        problems.push({
          path,
          message: `condition service_completed_successfully needs service "${dep.service}" ` +
            `to be a job with restart: "no" (it has restart: "${target.restart}")`,
        });
      }
    }
  });
  const cycle = dependencyCycle(services);
  if (cycle) {
    problems.push({ path: [], message: `depends_on forms a cycle: ${cycle.join(" -> ")}` });
  }
  return problems;
}

/** A `depends_on` cycle as service names (first = last), or undefined. */
function dependencyCycle(services: readonly PodmanService[]): string[] | undefined {
  const edges = new Map(services.map((s) => [s.name, dependenciesOf(s).map((d) => d.service)]));
  const state = new Map<string, "visiting" | "done">();
  const stack: string[] = [];
  const visit = (name: string): string[] | undefined => {
    if (state.get(name) === "done" || !edges.has(name)) return undefined;
    if (state.get(name) === "visiting") return [...stack.slice(stack.indexOf(name)), name];
    state.set(name, "visiting");
    stack.push(name);
    for (const next of edges.get(name) ?? []) {
      if (next === name) continue; // reported as "depends on itself"
      const found = visit(next);
      if (found) return found;
    }
    stack.pop();
    state.set(name, "done");
    return undefined;
  };
  for (const name of edges.keys()) {
    const found = visit(name);
    if (found) return found;
  }
  return undefined;
}

/** A `PodmanV0` score. */
export type PodmanV0Score = z.infer<typeof PodmanV0Score>;

/**
 * What should run for one deployment, discriminated on `type`. A new score
 * type is a new member of this union; existing members stay untouched.
 */
export const Score = z.discriminatedUnion("type", [PodmanV0Score]);
/** What should run for one deployment. */
export type Score = z.infer<typeof Score>;
/** The score as written (before defaults are applied). */
export type ScoreInput = z.input<typeof Score>;
