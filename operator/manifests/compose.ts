/**
 * A compose file as a Drover manifest: `operator convert`'s decisions, pure.
 * The shell (commands/convert.ts) reads the compose file, the `.env` beside it
 * and the config files it names; everything here is a function of those texts.
 *
 * Compose's own rules apply to what is read: `${VAR}`, `${VAR:-default}`,
 * `${VAR-default}`, `$VAR` and `$$` interpolation from the environment and
 * `.env` (an unset variable becomes "" with a warning); `environment` and
 * `labels` as a list or a map; `command` and `entrypoint` as a string (split
 * like a shell would) or a list; the obsolete `version:` ignored; `x-` keys
 * ignored. Every key that cannot be carried over is a warning naming the key
 * and why (docs/workloads.md has the table). The manifest returned has passed
 * the contract's schema: a value the schema refuses is dropped with a warning
 * naming its key.
 *
 * @module
 */

import {
  DeploymentManifest,
  type DeploymentManifestInput,
  formatIssueMessage,
  formatPath,
  nameProblem,
  suggestKey,
} from "@drover/contracts";

/** What {@linkcode convertCompose} needs besides the parsed compose document. */
export interface ConvertOptions {
  /** The compose file's name, for messages. */
  file: string;
  /** Deployment name (`--name`); else compose's `name:`, else `fallbackName`. */
  name?: string | undefined;
  /** The compose file's directory name: compose's default project name. */
  fallbackName: string;
  /** Device labels to select (`--selector k=v`). */
  selector?: Record<string, string> | undefined;
  /** A variable for interpolation: the environment's, else the `.env` file's; undefined if unset. */
  variable: (name: string) => string | undefined;
  /** Contents of the config files the compose file names (`configs.X.file`), by path as written. */
  files?: ReadonlyMap<string, string>;
}

/** The result: a manifest (absent when nothing usable remains) and the warnings. */
export interface ConvertResult {
  manifest?: DeploymentManifestInput;
  warnings: string[];
}

type Dict = Record<string, unknown>;

const isDict = (v: unknown): v is Dict => typeof v === "object" && v !== null && !Array.isArray(v);

/** Service keys carried over as they are (same name and shape in compose and Drover). */
const SAME_KEYS = [
  "mem_limit",
  "cpus",
  "pids_limit",
  "user",
  "working_dir",
  "read_only",
  "tmpfs",
  "cap_add",
  "cap_drop",
] as const;

/** Service keys with a reason they are not carried over. */
const REFUSED_SERVICE_KEYS: Record<string, string> = {
  build: "devices do not build images; build and push the image, then set image:",
  extends: "extends is not supported; write the service out in full",
  container_name: "Drover names containers <deployment>_<service>",
  hostname: "not supported; services reach each other by service name",
  domainname: "not supported",
  links: "not needed: services reach each other by service name on the deployment's network",
  external_links: "not supported",
  extra_hosts: "not supported",
  dns: "not supported: the deployment's network brings its own DNS",
  dns_search: "not supported",
  env_file: "not read; put the variables under environment:",
  privileged: "refused: a privileged container owns the device; use cap_add and devices",
  security_opt: "not supported",
  pid: "not supported (the host's PID namespace is refused)",
  ipc: "not supported",
  userns_mode: "not supported",
  cgroup_parent: "not supported",
  sysctls: "not supported",
  ulimits: "not supported",
  shm_size: "not supported",
  stdin_open: "not supported: services run unattended",
  tty: "not supported: services run unattended",
  init: "not supported",
  platform: "not supported: the device pulls its own architecture",
  pull_policy: "not supported: the agent pulls when the image is missing (always for :latest)",
  profiles: "ignored: the service is converted as if its profile were active",
  expose: "not needed: services reach each other's ports on the deployment's network",
  stop_signal: "not supported (SIGTERM, then SIGKILL after stop_timeout)",
  mem_reservation: "not supported (only mem_limit)",
  memswap_limit: "not supported (only mem_limit)",
  cpu_shares: "not supported (use cpus)",
  cpuset: "not supported (use cpus)",
  scale: "not supported: one container per service per device",
  develop: "not supported",
  annotations: "not supported",
  group_add: "not supported",
  oom_score_adj: "not supported",
  runtime: "not supported",
};

/** Every service key this converter knows (mapped or refused), for did-you-mean. */
const COMPOSE_SERVICE_KEYS: readonly string[] = [
  "image",
  ...SAME_KEYS,
  ...Object.keys(REFUSED_SERVICE_KEYS),
  "command",
  "entrypoint",
  "environment",
  "labels",
  "ports",
  "volumes",
  "devices",
  "restart",
  "healthcheck",
  "stop_grace_period",
  "logging",
  "depends_on",
  "network_mode",
  "networks",
  "deploy",
  "configs",
  "secrets",
];

/** `unknown key, ignored`, with `; did you mean "x"?` when a known key is close. Pure. */
function unknownKeyWarning(key: string, known: readonly string[]): string {
  const suggestion = suggestKey(key, known);
  return `unknown key, ignored${
    suggestion === undefined ? "" : `; did you mean ${JSON.stringify(suggestion)}?`
  }`;
}

/** Top-level keys besides services, networks, volumes, configs and secrets. */
const TOP_LEVEL_REFUSED: Record<string, string> = {
  include: "include is not supported; merge the files first",
};

/**
 * Converts a parsed compose document. Never throws on bad input: every
 * problem is a warning, and a service that cannot be used is left out.
 */
export function convertCompose(doc: unknown, options: ConvertOptions): ConvertResult {
  const warnings: string[] = [];
  const warn = (key: string, why: string) => warnings.push(`${key}: ${why}`);
  const unset = new Set<string>();
  const interpolated = interpolateTree(doc, options.variable, unset, warn);
  for (const name of [...unset].sort()) {
    warn(`\${${name}}`, 'variable is not set (in the environment or .env); using ""');
  }
  if (!isDict(interpolated)) {
    warn("(root)", "a compose file is a mapping with a services: key");
    return { warnings };
  }
  for (const [key, why] of Object.entries(TOP_LEVEL_REFUSED)) {
    if (key in interpolated) warn(key, why);
  }
  for (const key of Object.keys(interpolated)) {
    if (
      !["version", "name", "services", "networks", "volumes", "configs", "secrets"].includes(key) &&
      !(key in TOP_LEVEL_REFUSED) && !key.startsWith("x-")
    ) {
      const known = ["version", "name", "services", "networks", "volumes", "configs", "secrets"];
      warn(key, unknownKeyWarning(key, known));
    }
  }
  const rawServices = interpolated.services;
  if (!isDict(rawServices) || Object.keys(rawServices).length === 0) {
    warn("services", "no services in this file");
    return { warnings };
  }
  checkNetworks(interpolated.networks, warn);
  checkVolumes(interpolated.volumes, warn);
  const configs = convertConfigs(interpolated.configs, options, warn);
  checkSecrets(interpolated.secrets, warn);

  const renamed = new Map<string, string>();
  for (const name of Object.keys(rawServices)) renamed.set(name, droverName(name));
  const services: Dict[] = [];
  for (const [composeName, raw] of Object.entries(rawServices)) {
    const name = renamed.get(composeName) ?? composeName;
    const key = `services.${composeName}`;
    if (name !== composeName) {
      warn(key, `renamed to "${name}" (Drover names are lower-case letters, digits and -)`);
    }
    if (nameProblem(name) !== undefined) {
      warn(key, `service name cannot be made a Drover name (${nameProblem(name)}); left out`);
      continue;
    }
    if (!isDict(raw)) {
      warn(key, "a service is a mapping; left out");
      continue;
    }
    const service = convertService(name, raw, key, renamed, configs, warn);
    if (service) services.push(service);
  }
  // A dependency on a service that was left out is dropped with it.
  const kept = new Set(services.map((s) => s.name as string));
  for (const service of services) dropMissingDependencies(service, kept, warn);
  if (services.length === 0) {
    warn("services", "nothing usable remains");
    return { warnings };
  }
  const name = deploymentName(options, interpolated.name, warn);
  const selector = options.selector !== undefined && Object.keys(options.selector).length > 0
    ? { labels: { ...options.selector } }
    : { devices: [] as string[] };
  if (!("labels" in selector)) {
    warn("--selector", "not given: the manifest targets no device until its selector is edited");
  }
  const manifest: Dict = {
    name,
    selector,
    score: {
      type: "PodmanV0",
      ...(configs.size > 0
        ? { configs: Object.fromEntries([...configs].map(([k, content]) => [k, { content }])) }
        : {}),
      services,
    },
  };
  return validated(manifest, warnings, warn);
}

/** Drops what the schema refuses, one warning per issue, until the rest validates. */
function validated(
  manifest: Dict,
  warnings: string[],
  warn: (key: string, why: string) => void,
): ConvertResult {
  for (let round = 0; round < 20; round++) {
    const result = DeploymentManifest.safeParse(manifest);
    if (result.success) return { manifest: manifest as DeploymentManifestInput, warnings };
    const services = (manifest.score as Dict).services as Dict[];
    let dropped = false;
    for (const issue of result.error.issues) {
      if (issue.code === "unrecognized_keys") {
        // A key this Drover's schema does not know (configs and secrets before they land).
        const holder = valueAt(manifest, issue.path);
        for (const key of issue.keys) {
          warn(
            formatPath([...issue.path, key]),
            "not known to this Drover version's manifest schema; left out",
          );
          if (isDict(holder)) delete holder[key];
        }
        dropped = true;
        continue;
      }
      const [top, , index, field] = issue.path;
      const service = typeof index === "number" ? services[index] : undefined;
      const name = service?.name;
      if (
        top === "score" && service !== undefined && typeof field === "string" && field in service
      ) {
        warn(
          `services.${String(name)}.${formatPath(issue.path.slice(3))}`,
          `${formatIssueMessage(issue)}; left out`,
        );
        delete service[field];
        dropped = true;
      } else if (top === "score" && service !== undefined && typeof field === "string") {
        continue; // a second issue of a field already left out
      } else if (top === "score" && service !== undefined) {
        warn(`services.${String(name)}`, `${formatIssueMessage(issue)}; service left out`);
        services.splice(index as number, 1);
        dropped = true;
        break;
      } else {
        warn(formatPath(issue.path), formatIssueMessage(issue));
      }
    }
    if (!dropped || services.length === 0) {
      if (services.length === 0) warn("services", "nothing usable remains");
      return { warnings };
    }
  }
  return { warnings };
}

function valueAt(root: unknown, path: readonly PropertyKey[]): unknown {
  let node = root;
  for (const key of path) {
    if (Array.isArray(node) && typeof key === "number") node = node[key];
    else if (isDict(node) && typeof key === "string") node = node[key];
    else return undefined;
  }
  return node;
}

function convertService(
  name: string,
  raw: Dict,
  key: string,
  renamed: ReadonlyMap<string, string>,
  configs: ReadonlyMap<string, string>,
  warn: (key: string, why: string) => void,
): Dict | undefined {
  if (typeof raw.image !== "string" || raw.image === "") {
    warn(
      key,
      "build" in raw
        ? "has build: but no image:; devices do not build images — push one and set image:; left out"
        : "has no image:; left out",
    );
    return undefined;
  }
  const out: Dict = { name, image: raw.image };
  for (const [field, value] of Object.entries(raw)) {
    const at = `${key}.${field}`;
    if (field === "image" || field.startsWith("x-")) continue;
    if (field in REFUSED_SERVICE_KEYS) {
      warn(at, REFUSED_SERVICE_KEYS[field] ?? "not supported");
      continue;
    }
    if ((SAME_KEYS as readonly string[]).includes(field)) {
      out[field] = field === "cpus" && typeof value === "string" ? Number(value) : value;
      continue;
    }
    switch (field) {
      case "command":
      case "entrypoint": {
        const argv = commandLine(value);
        if (argv === undefined) warn(at, "expected a string or a list of strings; left out");
        else if (argv.length > 0) out[field] = argv;
        break;
      }
      case "environment": {
        const env = keyValues(value, at, warn, true);
        if (env && Object.keys(env).length > 0) out.env = env;
        break;
      }
      case "labels": {
        const labels = keyValues(value, at, warn, false);
        if (labels && Object.keys(labels).length > 0) out.labels = labels;
        break;
      }
      case "ports":
        out.ports = listOf(value, at, warn, (p, i) => portString(p, `${at}[${i}]`, warn));
        break;
      case "volumes":
        out.volumes = listOf(value, at, warn, (v, i) => volumeString(v, `${at}[${i}]`, warn));
        break;
      case "devices":
        out.devices = listOf(value, at, warn, (d, i) => deviceString(d, `${at}[${i}]`, warn));
        break;
      case "restart":
        if (typeof value === "string" && /^on-failure:[0-9]+$/.test(value)) {
          warn(at, "the retry count is not supported; on-failure retries without a limit");
          out.restart = "on-failure";
        } else out.restart = value;
        break;
      case "healthcheck":
        convertHealthcheck(value, at, out, warn);
        break;
      case "stop_grace_period":
        out.stop_timeout = value;
        break;
      case "logging":
        convertLogging(value, at, out, warn);
        break;
      case "depends_on":
        convertDependsOn(value, at, renamed, out, warn);
        break;
      case "network_mode":
        if (value === "host") out.network_mode = "host";
        else if (value === "bridge" || value === "default") {
          warn(at, `"${String(value)}" ignored: the service joins the deployment's own network`);
        } else {
          warn(
            at,
            `"${String(value)}" is not supported (only "host"; by default the service ` +
              "joins the deployment's own network)",
          );
        }
        break;
      case "networks":
        convertServiceNetworks(value, at, warn);
        break;
      case "deploy":
        convertDeploy(value, at, out, warn);
        break;
      case "configs":
      case "secrets": {
        const refs = listOf(value, at, warn, (r, i) => fileRef(r, `${at}[${i}]`, warn));
        if (field === "configs") {
          for (const ref of refs) {
            const source = typeof ref === "string" ? ref : (ref as Dict).source;
            if (!configs.has(String(source))) {
              warn(
                at,
                `config "${String(source)}" is not defined (or not usable) at the top level`,
              );
            }
          }
        }
        if (refs.length > 0) out[field] = refs;
        break;
      }
      default:
        warn(at, unknownKeyWarning(field, COMPOSE_SERVICE_KEYS));
    }
  }
  return out;
}

function dropMissingDependencies(
  service: Dict,
  kept: ReadonlySet<string>,
  warn: (key: string, why: string) => void,
): void {
  const deps = service.depends_on;
  if (deps === undefined) return;
  const missing = (d: string) => !kept.has(d);
  if (Array.isArray(deps)) {
    for (const d of deps.filter(missing)) {
      warn(`services.${String(service.name)}.depends_on.${d}`, "that service was left out");
    }
    service.depends_on = deps.filter((d) => !missing(d));
  } else if (isDict(deps)) {
    for (const d of Object.keys(deps).filter(missing)) {
      warn(`services.${String(service.name)}.depends_on.${d}`, "that service was left out");
      delete deps[d];
    }
  }
}

function deploymentName(
  options: ConvertOptions,
  composeName: unknown,
  warn: (key: string, why: string) => void,
): string {
  const given = options.name ?? (typeof composeName === "string" ? composeName : undefined);
  const raw = given ?? options.fallbackName;
  const name = droverName(raw);
  if (name !== raw) warn("name", `deployment name "${raw}" becomes "${name}"`);
  return name;
}

/** Compose names allow `_`, `.` and capitals; Drover's are DNS labels. */
export function droverName(name: string): string {
  return name.toLowerCase().replace(/[^a-z0-9-]+/g, "-").replace(/^-+|-+$/g, "").slice(0, 63)
    .replace(/-+$/, "");
}

// ---- interpolation ---------------------------------------------------------

/**
 * Compose interpolation of one string: `$$` is `$`; `${VAR}`, `$VAR`;
 * `${VAR:-default}` (unset or empty), `${VAR-default}` (unset);
 * `${VAR:?message}` / `${VAR?message}` (warn); unset variables are collected.
 */
export function interpolate(
  text: string,
  variable: (name: string) => string | undefined,
  unset: Set<string>,
  warn: (key: string, why: string) => void = () => {},
): string {
  return text.replace(
    /\$(\$|\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])((?:[^{}]|\{[^{}]*\})*))?\}|([A-Za-z_][A-Za-z0-9_]*))/g,
    (_whole, dollar, braced, op, arg, bare) => {
      if (dollar === "$") return "$";
      const name: string = braced ?? bare;
      const value = variable(name);
      if (op === ":-" || op === "-") {
        const useDefault = value === undefined || (op === ":-" && value === "");
        return useDefault ? interpolate(arg ?? "", variable, unset, warn) : value;
      }
      if (op === ":?" || op === "?") {
        if (value === undefined || (op === ":?" && value === "")) {
          warn(`\${${name}}`, `required variable is not set${arg ? `: ${arg}` : ""}`);
          return "";
        }
        return value;
      }
      if (value === undefined) {
        unset.add(name);
        return "";
      }
      return value;
    },
  );
}

function interpolateTree(
  value: unknown,
  variable: (name: string) => string | undefined,
  unset: Set<string>,
  warn: (key: string, why: string) => void,
): unknown {
  if (typeof value === "string") return interpolate(value, variable, unset, warn);
  if (Array.isArray(value)) return value.map((v) => interpolateTree(v, variable, unset, warn));
  if (isDict(value)) {
    return Object.fromEntries(
      Object.entries(value).map(([k, v]) => [k, interpolateTree(v, variable, unset, warn)]),
    );
  }
  return value;
}

/**
 * A `.env` file as compose reads it: `KEY=VALUE` lines, `#` comments, an
 * optional `export `, single quotes literal, double quotes with `\n` escapes.
 */
export function parseDotEnv(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of text.split(/\r?\n/)) {
    const match = /^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_.]*)\s*=\s*(.*?)\s*$/.exec(line);
    if (!match || line.trimStart().startsWith("#")) continue;
    const [, key = "", raw = ""] = match;
    let value = raw;
    if (/^'.*'$/.test(raw)) value = raw.slice(1, -1);
    else if (/^".*"$/.test(raw)) {
      value = raw.slice(1, -1).replace(/\\n/g, "\n").replace(/\\"/g, '"');
    } else value = raw.replace(/\s+#.*$/, "");
    out[key] = value;
  }
  return out;
}

// ---- service keys -------------------------------------------------------------

/** A command as compose takes it: a list, or a string split the way a shell would. */
export function commandLine(value: unknown): string[] | undefined {
  if (Array.isArray(value)) {
    return value.every((v) => typeof v === "string" || typeof v === "number")
      ? value.map(String)
      : undefined;
  }
  if (typeof value !== "string") return undefined;
  const out: string[] = [];
  let current = "";
  let inWord = false;
  let quote: "'" | '"' | undefined;
  for (let i = 0; i < value.length; i++) {
    const ch = value[i] ?? "";
    if (quote) {
      if (ch === quote) quote = undefined;
      else if (ch === "\\" && quote === '"' && /["\\$`]/.test(value[i + 1] ?? "")) {
        current += value[++i];
      } else current += ch;
    } else if (ch === "'" || ch === '"') {
      quote = ch;
      inWord = true;
    } else if (ch === "\\") {
      current += value[++i] ?? "";
      inWord = true;
    } else if (/\s/.test(ch)) {
      if (inWord) out.push(current);
      current = "";
      inWord = false;
    } else {
      current += ch;
      inWord = true;
    }
  }
  if (inWord) out.push(current);
  return out;
}

function keyValues(
  value: unknown,
  at: string,
  warn: (key: string, why: string) => void,
  fromEnvironment: boolean,
): Record<string, string> | undefined {
  const out: Record<string, string> = {};
  if (Array.isArray(value)) {
    for (const item of value) {
      const text = String(item);
      const eq = text.indexOf("=");
      if (eq < 0) {
        warn(
          `${at}.${text}`,
          fromEnvironment
            ? "has no value (compose would copy it from the shell at run time); left out"
            : 'has no "="; set to ""',
        );
        if (!fromEnvironment) out[text] = "";
        continue;
      }
      out[text.slice(0, eq)] = text.slice(eq + 1);
    }
    return out;
  }
  if (isDict(value)) {
    for (const [k, v] of Object.entries(value)) {
      if (v === null || v === undefined) {
        warn(`${at}.${k}`, "has no value; left out");
        continue;
      }
      out[k] = typeof v === "object" ? JSON.stringify(v) : String(v);
    }
    return out;
  }
  warn(at, "expected a list of KEY=VALUE or a mapping; left out");
  return undefined;
}

function listOf<T>(
  value: unknown,
  at: string,
  warn: (key: string, why: string) => void,
  convert: (item: unknown, index: number) => T | undefined,
): T[] {
  const items = Array.isArray(value) ? value : typeof value === "string" ? [value] : undefined;
  if (items === undefined) {
    warn(at, "expected a list; left out");
    return [];
  }
  return items.flatMap((item, i) => {
    const converted = convert(item, i);
    return converted === undefined ? [] : [converted];
  });
}

function portString(
  value: unknown,
  at: string,
  warn: (key: string, why: string) => void,
): string | undefined {
  if (typeof value === "number") return String(value);
  if (typeof value === "string") {
    if (/[0-9]-[0-9]/.test(value)) {
      warn(at, `port range "${value}" is not supported; list the ports one by one`);
      return undefined;
    }
    return value;
  }
  if (isDict(value)) {
    const target = value.target;
    if (typeof target !== "number" && typeof target !== "string") {
      warn(at, "long-form port without target; left out");
      return undefined;
    }
    const ip = typeof value.host_ip === "string" ? `${value.host_ip}:` : "";
    const published = value.published !== undefined ? `${String(value.published)}:` : "";
    const proto = value.protocol === "udp" ? "/udp" : "";
    if (ip !== "" && published === "") {
      warn(at, "host_ip without published port; host_ip left out");
      return `${target}${proto}`;
    }
    return `${ip}${published}${target}${proto}`;
  }
  warn(at, "expected a port string or mapping; left out");
  return undefined;
}

function volumeString(
  value: unknown,
  at: string,
  warn: (key: string, why: string) => void,
): string | undefined {
  let source: string | undefined;
  let target: string | undefined;
  let mode = "";
  if (typeof value === "string") {
    const parts = value.split(":");
    if (parts.length === 1) {
      warn(at, `anonymous volume "${value}" is not supported; name it ("data:${value}")`);
      return undefined;
    }
    [source, target] = parts;
    const rest = parts.slice(2).join(":");
    if (rest !== "") {
      const flags = rest.split(",");
      mode = flags.includes("ro") ? ":ro" : "";
      const other = flags.filter((f) => f !== "ro" && f !== "rw");
      if (other.length > 0) warn(at, `volume options ${other.join(",")} are not supported`);
    }
  } else if (isDict(value)) {
    if (value.type === "tmpfs") {
      warn(at, "tmpfs volumes: use the service's tmpfs: key; left out");
      return undefined;
    }
    source = typeof value.source === "string" ? value.source : undefined;
    target = typeof value.target === "string" ? value.target : undefined;
    mode = value.read_only === true ? ":ro" : "";
    if (source === undefined) {
      warn(at, "a volume without source is not supported; left out");
      return undefined;
    }
  } else {
    warn(at, "expected a volume string or mapping; left out");
    return undefined;
  }
  if (source === undefined || target === undefined) return undefined;
  if (source.startsWith(".") || source.startsWith("~")) {
    warn(
      at,
      `relative bind mount "${source}" cannot be carried to a device: use an absolute path ` +
        "the device policy allows (allowed_host_paths) or a named volume; left out",
    );
    return undefined;
  }
  return `${source}:${target}${mode}`;
}

function deviceString(
  value: unknown,
  at: string,
  warn: (key: string, why: string) => void,
): string | undefined {
  if (typeof value === "string") return value;
  if (isDict(value) && typeof value.source === "string") {
    const target = typeof value.target === "string" ? value.target : value.source;
    const permissions = typeof value.permissions === "string" ? `:${value.permissions}` : "";
    return `${value.source}:${target}${permissions}`;
  }
  warn(at, "expected a device string or mapping with source; left out");
  return undefined;
}

/** The healthcheck keys carried over as they are, besides `test` (and `disable`). */
const HEALTHCHECK_DURATION_KEYS: readonly string[] = [
  "interval",
  "timeout",
  "retries",
  "start_period",
];

function convertHealthcheck(
  value: unknown,
  at: string,
  out: Dict,
  warn: (key: string, why: string) => void,
): void {
  if (!isDict(value)) {
    warn(at, "expected a mapping; left out");
    return;
  }
  if (value.disable === true) {
    out.healthcheck = { test: ["NONE"] };
    return;
  }
  const check: Dict = {};
  if (typeof value.test === "string") check.test = ["CMD-SHELL", value.test];
  else if (Array.isArray(value.test)) check.test = value.test.map(String);
  for (const key of HEALTHCHECK_DURATION_KEYS) {
    if (value[key] !== undefined) check[key] = value[key];
  }
  for (const key of Object.keys(value)) {
    if (key !== "test" && key !== "disable" && !HEALTHCHECK_DURATION_KEYS.includes(key)) {
      warn(`${at}.${key}`, "not supported; left out");
    }
  }
  if (check.test === undefined) {
    warn(at, "no test; the image's own health check applies");
    return;
  }
  out.healthcheck = check;
}

function convertLogging(
  value: unknown,
  at: string,
  out: Dict,
  warn: (key: string, why: string) => void,
): void {
  if (!isDict(value)) {
    warn(at, "expected a mapping; left out");
    return;
  }
  const logging: Dict = {};
  if (value.driver !== undefined) {
    if (["json-file", "k8s-file", "journald", "none", "local"].includes(String(value.driver))) {
      logging.driver = value.driver === "local" ? "k8s-file" : value.driver;
    } else {
      warn(`${at}.driver`, `"${String(value.driver)}" is not supported; logs stay in k8s-file`);
    }
  }
  if (isDict(value.options)) {
    const options: Dict = {};
    for (const [key, v] of Object.entries(value.options)) {
      if (key === "max-size" || key === "max-file") options[key] = String(v);
      else warn(`${at}.options.${key}`, "not supported; left out");
    }
    if (Object.keys(options).length > 0) logging.options = options;
  }
  if (Object.keys(logging).length > 0) out.logging = logging;
}

function convertDependsOn(
  value: unknown,
  at: string,
  renamed: ReadonlyMap<string, string>,
  out: Dict,
  warn: (key: string, why: string) => void,
): void {
  const rename = (s: string) => renamed.get(s) ?? droverName(s);
  if (Array.isArray(value)) {
    out.depends_on = value.map((s) => rename(String(s)));
    return;
  }
  if (!isDict(value)) {
    warn(at, "expected a list or a mapping; left out");
    return;
  }
  const deps: Dict = {};
  for (const [name, spec] of Object.entries(value)) {
    const condition = isDict(spec) && typeof spec.condition === "string"
      ? spec.condition
      : "service_started";
    if (isDict(spec)) {
      if (spec.restart !== undefined) {
        warn(
          `${at}.${name}.restart`,
          "not supported (a dependency's restart does not restart this)",
        );
      }
      if (spec.required === false) {
        warn(`${at}.${name}.required`, "false is not supported: the dependency is required");
      }
    }
    deps[rename(name)] = { condition };
  }
  out.depends_on = deps;
}

function convertServiceNetworks(
  value: unknown,
  at: string,
  warn: (key: string, why: string) => void,
): void {
  if (!isDict(value)) return; // A plain list only names networks: merged, said at the top level.
  for (const [network, spec] of Object.entries(value)) {
    if (!isDict(spec)) continue;
    for (const key of Object.keys(spec)) {
      warn(
        `${at}.${network}.${key}`,
        key === "ipv4_address" || key === "ipv6_address"
          ? "static addresses are not supported: services reach each other by name"
          : key === "aliases"
          ? "not supported: a service is reachable by its service name only"
          : "not supported",
      );
    }
  }
}

function convertDeploy(
  value: unknown,
  at: string,
  out: Dict,
  warn: (key: string, why: string) => void,
): void {
  if (!isDict(value)) return;
  const limits = isDict(value.resources) && isDict(value.resources.limits)
    ? value.resources.limits
    : undefined;
  if (limits?.memory !== undefined && out.mem_limit === undefined) out.mem_limit = limits.memory;
  if (limits?.cpus !== undefined && out.cpus === undefined) out.cpus = Number(limits.cpus);
  if (limits?.pids !== undefined && out.pids_limit === undefined) out.pids_limit = limits.pids;
  for (const key of Object.keys(value)) {
    if (key !== "resources") warn(`${at}.${key}`, "not supported; left out");
  }
  if (isDict(value.resources)) {
    for (const key of Object.keys(value.resources)) {
      if (key !== "limits") warn(`${at}.resources.${key}`, "not supported (only limits)");
    }
  }
}

/** A service's `configs`/`secrets` entry as the score takes it: a name, or `{ source, target, mode, uid, gid }`. */
function fileRef(
  value: unknown,
  at: string,
  warn: (key: string, why: string) => void,
): string | Dict | undefined {
  if (typeof value === "string") return droverName(value);
  if (!isDict(value) || typeof value.source !== "string") {
    warn(at, "expected a name or a mapping with source; left out");
    return undefined;
  }
  const ref: Dict = { source: droverName(value.source) };
  if (typeof value.target === "string") ref.target = value.target;
  if (value.mode !== undefined) ref.mode = octalMode(value.mode);
  for (const key of ["uid", "gid"]) {
    const id = value[key];
    if (id === undefined) continue;
    if (/^[0-9]+$/.test(String(id))) ref[key] = String(id);
    else warn(`${at}.${key}`, "expected a numeric id; left out");
  }
  return ref;
}

/**
 * A file mode as the octal string Drover takes. YAML 1.2 reads `0440` as the
 * number 440, compose (YAML 1.1) as octal: digits 0-7 are read as octal digits.
 */
function octalMode(mode: unknown): string {
  if (typeof mode === "string") return mode.startsWith("0") ? mode : `0${mode}`;
  const digits = String(mode);
  return /^[0-7]+$/.test(digits) ? `0${digits}` : `0${Number(mode).toString(8)}`;
}

// ---- top level -----------------------------------------------------------------

function checkNetworks(value: unknown, warn: (key: string, why: string) => void): void {
  if (!isDict(value)) return;
  const names = Object.keys(value);
  if (names.length > 1) {
    warn(
      "networks",
      `${names.join(", ")} are merged into the deployment's one network (every service ` +
        "reaches every other by name)",
    );
  }
  for (const [name, spec] of Object.entries(value)) {
    if (!isDict(spec)) continue;
    for (const key of Object.keys(spec)) {
      warn(
        `networks.${name}.${key}`,
        key === "ipam"
          ? "static subnets are not supported: podman picks the deployment network's subnet"
          : "not supported",
      );
    }
  }
}

function checkVolumes(value: unknown, warn: (key: string, why: string) => void): void {
  if (!isDict(value)) return;
  for (const [name, spec] of Object.entries(value)) {
    if (!isDict(spec)) continue;
    for (const key of Object.keys(spec)) {
      warn(
        `volumes.${name}.${key}`,
        "not supported: named volumes are local volumes created on the device",
      );
    }
  }
}

function convertConfigs(
  value: unknown,
  options: ConvertOptions,
  warn: (key: string, why: string) => void,
): Map<string, string> {
  const out = new Map<string, string>();
  if (!isDict(value)) return out;
  for (const [composeName, spec] of Object.entries(value)) {
    const at = `configs.${composeName}`;
    const name = droverName(composeName);
    if (!isDict(spec)) {
      warn(at, "expected a mapping; left out");
      continue;
    }
    if (typeof spec.content === "string") out.set(name, spec.content);
    else if (typeof spec.file === "string") {
      const content = options.files?.get(spec.file);
      if (content === undefined) warn(`${at}.file`, `cannot read "${spec.file}"; left out`);
      else out.set(name, content);
    } else if (spec.external === true) {
      warn(at, "external configs are not supported: write its content: inline; left out");
    } else warn(at, "only content: and file: are supported; left out");
  }
  return out;
}

/** The config files a compose document names (`configs.X.file`), as written. */
export function configFiles(doc: unknown): string[] {
  if (!isDict(doc) || !isDict(doc.configs)) return [];
  return Object.values(doc.configs).flatMap((spec) =>
    isDict(spec) && typeof spec.file === "string" ? [spec.file] : []
  );
}

function checkSecrets(value: unknown, warn: (key: string, why: string) => void): void {
  if (!isDict(value)) return;
  for (const [composeName, spec] of Object.entries(value)) {
    const name = droverName(composeName);
    const file = isDict(spec) && typeof spec.file === "string" ? spec.file : "PATH";
    warn(
      `secrets.${composeName}`,
      "a manifest does not carry secret values; store it with " +
        `\`drover-operator secret set ${name} --from-file ${file}\``,
    );
  }
}
