/**
 * Compose's workload keys beyond image and command — resources, process
 * options, devices, log rotation, ordering — as parsers and zod schemas that
 * `score.ts` puts into `PodmanService`. Shapes and spellings are compose's
 * (`mem_limit: 64m`, `devices: ["/dev/ttyUSB0:/dev/ttyUSB0:rw"]`,
 * `logging.options.max-size`), so a compose user reads a manifest without a
 * manual. docs/workloads.md lists what maps and what is refused.
 *
 * @module
 */

import { z } from "zod";

const BYTE_UNITS: Record<string, number> = {
  "": 1,
  b: 1,
  k: 1024,
  kb: 1024,
  m: 1024 ** 2,
  mb: 1024 ** 2,
  g: 1024 ** 3,
  gb: 1024 ** 3,
};
const BYTE_SIZE = /^([0-9]+(?:\.[0-9]+)?)\s*([kmg]?b?)$/i;

/**
 * Bytes of a compose byte size: a number of bytes, or a string with an
 * optional binary unit (`"64m"` = 64 MiB, `"1g"`, `"512k"`, `"100b"`,
 * `"64mb"`). Returns a message when it is not one.
 *
 * @example
 * ```ts
 * parseByteSize("64m"); // 67108864
 * parseByteSize("lots"); // 'invalid byte size "lots": …'
 * ```
 */
export function parseByteSize(value: string | number): number | string {
  const bad = (why: string) => `invalid byte size ${JSON.stringify(value)}: ${why}`;
  if (typeof value === "number") {
    return Number.isSafeInteger(value) && value > 0 ? value : bad("expected a positive integer");
  }
  const match = BYTE_SIZE.exec(value.trim());
  if (!match) return bad('expected a number with an optional unit b, k, m or g (e.g. "64m")');
  const bytes = Math.floor(Number(match[1]) * (BYTE_UNITS[(match[2] ?? "").toLowerCase()] ?? NaN));
  if (!Number.isSafeInteger(bytes) || bytes <= 0) return bad("must be a positive size");
  return bytes;
}

/** Smallest memory limit podman accepts (it refuses less than 6 MiB). */
export const MIN_MEM_LIMIT_BYTES = 6 * 1024 ** 2;

/** A compose byte size (number of bytes or `"64m"`-style string), at least `minBytes`. */
export function byteSize(minBytes = 1) {
  return z.union([z.int(), z.string().max(32)]).superRefine((value, ctx) => {
    const bytes = parseByteSize(value);
    if (typeof bytes === "string") ctx.addIssue({ code: "custom", message: bytes });
    else if (bytes < minBytes) {
      ctx.addIssue({
        code: "custom",
        message: `${JSON.stringify(value)} is below the minimum of ${formatBytes(minBytes)}`,
      });
    }
  });
}

/** `67108864` → `"64MiB"`: a byte count for people. */
export function formatBytes(bytes: number): string {
  for (const [unit, size] of [["GiB", 1024 ** 3], ["MiB", 1024 ** 2], ["KiB", 1024]] as const) {
    if (bytes >= size && bytes % size === 0) return `${bytes / size}${unit}`;
  }
  return `${bytes}B`;
}

/**
 * Linux capability names (capabilities(7)), without the `CAP_` prefix. `cap_add` and
 * `cap_drop` accept each with or without the prefix, in any case; `cap_drop` also `ALL`.
 */
export const CAPABILITIES: readonly string[] = [
  "AUDIT_CONTROL",
  "AUDIT_READ",
  "AUDIT_WRITE",
  "BLOCK_SUSPEND",
  "BPF",
  "CHECKPOINT_RESTORE",
  "CHOWN",
  "DAC_OVERRIDE",
  "DAC_READ_SEARCH",
  "FOWNER",
  "FSETID",
  "IPC_LOCK",
  "IPC_OWNER",
  "KILL",
  "LEASE",
  "LINUX_IMMUTABLE",
  "MAC_ADMIN",
  "MAC_OVERRIDE",
  "MKNOD",
  "NET_ADMIN",
  "NET_BIND_SERVICE",
  "NET_BROADCAST",
  "NET_RAW",
  "PERFMON",
  "SETFCAP",
  "SETGID",
  "SETPCAP",
  "SETUID",
  "SYS_ADMIN",
  "SYS_BOOT",
  "SYS_CHROOT",
  "SYS_MODULE",
  "SYS_NICE",
  "SYS_PACCT",
  "SYS_PTRACE",
  "SYS_RAWIO",
  "SYS_RESOURCE",
  "SYS_TIME",
  "SYS_TTY_CONFIG",
  "SYSLOG",
  "WAKE_ALARM",
];
const KNOWN_CAPABILITIES = new Set(CAPABILITIES);

/** `"net_admin"`, `"CAP_NET_ADMIN"` → `"CAP_NET_ADMIN"` (podman's spelling); `"all"` → `"ALL"`. */
export function canonicalCapability(name: string): string {
  const upper = name.toUpperCase();
  if (upper === "ALL") return "ALL";
  return upper.startsWith("CAP_") ? upper : `CAP_${upper}`;
}

function capabilityList(allowAll: boolean) {
  return z.array(
    z.string().max(64).superRefine((value, ctx) => {
      const canonical = canonicalCapability(value);
      if (canonical === "ALL" && allowAll) return;
      if (!KNOWN_CAPABILITIES.has(canonical.slice(4))) {
        ctx.addIssue({
          code: "custom",
          message: `unknown capability ${JSON.stringify(value)}` +
            (allowAll ? ' (expected e.g. "NET_ADMIN", or "ALL")' : ' (expected e.g. "NET_ADMIN")'),
        });
      }
    }),
  ).max(64);
}

/** A host device mapped into a container, parsed from compose short syntax. */
export interface DeviceMapping {
  /** Device path on the host. */
  host: string;
  /** Path inside the container (default: the host path). */
  container: string;
  /** cgroup permissions: some of `r`, `w`, `m` (default `rwm`). */
  permissions: string;
}

function absolutePathProblem(path: string, what: string): string | undefined {
  if (!path.startsWith("/")) return `${what} "${path}" must be an absolute path`;
  if (path.split("/").some((seg) => seg === "..")) return `${what} "${path}" must not contain ".."`;
  if (/[\0\n:,]/.test(path)) return `${what} must not contain NUL, newline, ":" or ","`;
  return undefined;
}

/**
 * Parses compose's device short syntax `HOST[:CONTAINER[:PERMISSIONS]]`
 * (`"/dev/ttyUSB0"`, `"/dev/ttyUSB0:/dev/serial"`, `"/dev/null:/dev/x:rw"`).
 * Returns a message on error.
 */
export function parseDeviceMapping(spec: string): DeviceMapping | string {
  const bad = (why: string) => `invalid device ${JSON.stringify(spec)}: ${why}`;
  const parts = spec.split(":");
  if (parts.length > 3) return bad('expected "HOST[:CONTAINER[:PERMISSIONS]]"');
  const [host = "", second, third] = parts;
  let container = host;
  let permissions = "rwm";
  if (parts.length === 2 && second !== undefined && /^[rwm]{1,3}$/.test(second)) {
    permissions = second;
  } else if (second !== undefined) {
    container = second;
    if (third !== undefined) permissions = third;
  }
  const hostProblem = absolutePathProblem(host, "host device path");
  if (hostProblem) return bad(hostProblem);
  const containerProblem = absolutePathProblem(container, "container path");
  if (containerProblem) return bad(containerProblem);
  if (!/^[rwm]{1,3}$/.test(permissions) || new Set(permissions).size !== permissions.length) {
    return bad(`permissions must be some of r, w, m (e.g. "rw"), got "${permissions}"`);
  }
  return { host, container, permissions };
}

/** A tmpfs mount, parsed from compose's `tmpfs` entries (`"/run"`, `"/tmp:size=64m"`). */
export interface TmpfsMount {
  target: string;
  /** Mount options as given (`size=64m`, `mode=1777`, …). */
  options: string[];
}

const TMPFS_OPTION =
  /^(size=[0-9]+[kmg]?|mode=[0-7]{3,4}|uid=[0-9]+|gid=[0-9]+|noexec|exec|nosuid|suid|nodev|dev|ro|rw)$/;

/** Parses a `tmpfs` entry `"/path[:option,option…]"`. Returns a message on error. */
export function parseTmpfsMount(spec: string): TmpfsMount | string {
  const bad = (why: string) => `invalid tmpfs ${JSON.stringify(spec)}: ${why}`;
  const colon = spec.indexOf(":");
  const target = colon < 0 ? spec : spec.slice(0, colon);
  const options = colon < 0 ? [] : spec.slice(colon + 1).split(",");
  const problem = absolutePathProblem(target, "container path");
  if (problem) return bad(problem);
  const unknown = options.find((o) => !TMPFS_OPTION.test(o));
  if (unknown !== undefined) {
    return bad(
      `unknown option ${JSON.stringify(unknown)} (known: size=, mode=, uid=, gid=, ` +
        "noexec, nosuid, nodev, ro, rw and their opposites)",
    );
  }
  return { target, options };
}

/** Refines a string with a parser that returns a message on error. */
export function parsedString(parse: (s: string) => unknown, max = 1024) {
  return z.string().max(max).superRefine((value, ctx) => {
    const result = parse(value);
    if (typeof result === "string") ctx.addIssue({ code: "custom", message: result });
  });
}

/** Log drivers a service may name; `json-file` (compose's default) means podman's `k8s-file`. */
export const LogDriver = z.enum(["k8s-file", "json-file", "journald", "none"], {
  message: 'expected "k8s-file", "json-file", "journald" or "none"',
});

/** Default cap of one container's log file: 10 MiB (podman keeps logs uncapped unless asked). */
export const DEFAULT_LOG_MAX_SIZE = "10m";

/** Longest `user` value: `name[:group]`, or numeric ids. */
const USER = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,63})?$/;

/** What a dependency must reach before the dependent service starts (compose's conditions). */
export const DependsOnCondition = z.enum([
  "service_started",
  "service_healthy",
  "service_completed_successfully",
], {
  message: 'expected "service_started", "service_healthy" or "service_completed_successfully"',
});
/** A `depends_on` condition. */
export type DependsOnCondition = z.infer<typeof DependsOnCondition>;

const ServiceRef = z.string().max(63);

/**
 * Schemas of the workload keys of a service, spread into `PodmanService` at
 * its end. None has a default: an absent key enters no spec hash.
 */
export const WORKLOAD_FIELDS = {
  /** Only `"host"` (policy-gated); absent: the deployment's own network with DNS. */
  network_mode: z.literal("host", {
    message: 'only "host" is supported (absent: the deployment\'s own network, with DNS)',
  }).optional(),
  /** Memory cap: `"64m"`, `"1g"` or bytes; at least 6 MiB. */
  mem_limit: byteSize(MIN_MEM_LIMIT_BYTES).optional(),
  /** CPU share, e.g. `0.5` (half a CPU) or `"1.5"`. */
  cpus: z.union([z.number(), z.string().max(16)]).superRefine((value, ctx) => {
    const n = Number(value);
    if (!Number.isFinite(n) || n <= 0 || n > 1024 || (typeof value === "string" && value === "")) {
      ctx.addIssue({
        code: "custom",
        message: `expected a CPU count such as 0.5 or 2, got ${JSON.stringify(value)}`,
      });
    }
  }).optional(),
  /** Most processes (threads) in the container. */
  pids_limit: z.int().min(1, "pids_limit must be at least 1").max(4_194_304).optional(),
  /** `user[:group]`, by name or id. */
  user: z.string().regex(USER, 'expected "user", "uid", "user:group" or "uid:gid"').optional(),
  /** The process's working directory. */
  working_dir: z.string().max(4096).superRefine((value, ctx) => {
    const problem = absolutePathProblem(value, "working_dir");
    if (problem) ctx.addIssue({ code: "custom", message: problem });
  }).optional(),
  /** Mounts the image's file system read-only. */
  read_only: z.boolean().optional(),
  /** tmpfs mounts: `"/path"` or `"/path:size=64m,mode=1777"`, one string or a list. */
  tmpfs: z.union([
    parsedString(parseTmpfsMount, 1024),
    z.array(parsedString(parseTmpfsMount, 1024)).max(64),
  ])
    .optional(),
  /** Capabilities added to podman's default set (device policy `allowed_capabilities`). */
  cap_add: capabilityList(false).optional(),
  /** Capabilities taken away; `ALL` drops every one. */
  cap_drop: capabilityList(true).optional(),
  /** Host devices, `HOST[:CONTAINER[:PERMISSIONS]]` (device policy `allowed_devices`). */
  devices: z.array(parsedString(parseDeviceMapping, 4096)).max(64).optional(),
  /** Log driver and rotation; without it logs are capped at {@linkcode DEFAULT_LOG_MAX_SIZE}. */
  logging: z.strictObject({
    driver: LogDriver.optional(),
    options: z.strictObject({
      /** Cap of the log file: `"10m"`, at least 4 KiB. */
      "max-size": byteSize(4096).optional(),
      /** Files kept (compose's name); podman keeps one file, capped at `max-size`. */
      "max-file": z.union([
        z.int().min(1).max(100),
        z.string().regex(/^[1-9][0-9]?$/, {
          message: 'expected a count such as "3"',
        }),
      ]).optional(),
    }).optional(),
  }).optional(),
  /**
   * Services to start first: a list (start after they started) or a map
   * `{ name: { condition } }` (compose's long form). Checked against the
   * score's services in `PodmanV0Score`.
   */
  depends_on: z.union([
    z.array(ServiceRef).max(64),
    z.record(
      ServiceRef,
      z.strictObject({
        condition: DependsOnCondition.default("service_started"),
        /** Accepted for compose compatibility; a dependency is always required here. */
        required: z.literal(true, { message: "only required: true is supported" }).optional(),
      }),
    ),
  ]).optional(),
};

/** One dependency of a service, whichever form `depends_on` was written in. */
export interface Dependency {
  service: string;
  condition: DependsOnCondition;
}

/** The dependencies of a service, from either form of `depends_on`. */
export function dependenciesOf(
  service: {
    depends_on?: string[] | Record<string, { condition: DependsOnCondition }> | undefined;
  },
): Dependency[] {
  const dependsOn = service.depends_on;
  if (dependsOn === undefined) return [];
  if (Array.isArray(dependsOn)) {
    return dependsOn.map((s) => ({ service: s, condition: "service_started" }));
  }
  return Object.entries(dependsOn).map(([s, d]) => ({ service: s, condition: d.condition }));
}

/** The tmpfs entries of a service, whichever form it was written in. */
export function tmpfsEntries(tmpfs: string | string[] | undefined): string[] {
  if (tmpfs === undefined) return [];
  return typeof tmpfs === "string" ? [tmpfs] : tmpfs;
}
