/**
 * Loading a deployment manifest from a file: YAML, TOML or JSON (by
 * extension, else by content), validated with the contract's schema. Errors
 * name the file, the field path and, for YAML, the line.
 *
 * @module
 */

import { isMap, isNode, isScalar, LineCounter, parseDocument } from "yaml";
import { parse as parseToml, TomlError } from "smol-toml";
import {
  DeploymentManifest,
  explainIssues,
  formatIssueMessage,
  formatPath,
  MAX_VALUE_BYTES,
} from "@drover/contracts";

/**
 * A manifest that cannot be read or is invalid; nothing was stored. The message names the
 * file, each detail line a field (and, for YAML, its line).
 */
export class ManifestError extends Error {
  override name = "ManifestError";
  /** One line per problem found. */
  readonly details: string[];
  constructor(message: string, details: string[] = [], options?: ErrorOptions) {
    super(message, options);
    this.details = details;
  }
}

/** A manifest file format. */
export type ManifestFormat = "yaml" | "toml" | "json";

/**
 * Largest YAML manifest accepted. The yaml parser reports about one error per
 * character on hostile flow-style text, which grows quadratically (measured:
 * 120 kB took 3 s, 500 kB took 48 s); real manifests are a few kB.
 */
export const MAX_YAML_MANIFEST_BYTES = 64 * 1024;

/** Picks the format from the file name, else from the content. */
export function detectFormat(fileName: string, text: string): ManifestFormat {
  const lower = fileName.toLowerCase();
  if (lower.endsWith(".yaml") || lower.endsWith(".yml")) return "yaml";
  if (lower.endsWith(".toml")) return "toml";
  if (lower.endsWith(".json")) return "json";
  const trimmed = text.trimStart();
  if (trimmed.startsWith("{")) return "json";
  // TOML tables (`[score]`) or `key = value` lines; YAML uses `key: value`.
  if (/^\s*\[[A-Za-z0-9_."' -]+\]\s*$/m.test(text) || /^\s*[A-Za-z0-9_"'.-]+\s*=/m.test(text)) {
    return "toml";
  }
  return "yaml";
}

/** Locates a field path in YAML source, for error messages. */
type Locate = (path: ReadonlyArray<PropertyKey>) => number | undefined;

function parseYaml(text: string, file: string): { data: unknown; locate: Locate } {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter });
  if (doc.errors.length > 0) {
    throw new ManifestError(
      `Invalid manifest ${file}: not valid YAML`,
      doc.errors.slice(0, 5).map((e) => {
        const pos = e.linePos?.[0];
        const first = (e.message.split("\n")[0] ?? "").replace(/ at line \d+, column \d+:?$/, "");
        return pos ? `line ${pos.line}, column ${pos.col}: ${first}` : first;
      }),
    );
  }
  const lineAt = (offset: number) => lineCounter.linePos(offset).line;
  /** Line of the key `path` ends with (a block value starts on a later line), else its node. */
  const lineOf = (path: ReadonlyArray<PropertyKey>): number | undefined => {
    const last = path.at(-1);
    if (typeof last === "string") {
      const parent = doc.getIn(path.slice(0, -1) as unknown[], true);
      const pair = isMap(parent)
        ? parent.items.find((p) => isScalar(p.key) && String(p.key.value) === last)
        : undefined;
      if (pair && isNode(pair.key) && pair.key.range) return lineAt(pair.key.range[0]);
    }
    const node = doc.getIn(path as unknown[], true);
    return isNode(node) && node.range ? lineAt(node.range[0]) : undefined;
  };
  const locate: Locate = (path) => {
    // The nearest node that exists: a missing field is reported at its parent.
    for (let n = path.length; n >= 0; n--) {
      const line = lineOf(path.slice(0, n));
      if (line !== undefined) return line;
    }
    return undefined;
  };
  let data: unknown;
  try {
    data = doc.toJS();
  } catch (e) {
    // The yaml library refuses alias bombs ("billion laughs") here, not in parsing.
    throw new ManifestError(`Invalid manifest ${file}: not valid YAML`, [
      (e as Error).message,
    ], { cause: e });
  }
  return { data, locate };
}

function parseTomlText(text: string, file: string): unknown {
  try {
    return parseToml(text);
  } catch (e) {
    if (e instanceof TomlError) {
      const first = e.message.split("\n")[0];
      throw new ManifestError(`Invalid manifest ${file}: not valid TOML`, [
        `line ${e.line}, column ${e.column}: ${first}`,
      ], { cause: e });
    }
    throw e;
  }
}

function parseJsonText(text: string, file: string): unknown {
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new ManifestError(`Invalid manifest ${file}: not valid JSON`, [
      (e as Error).message,
    ], { cause: e });
  }
}

/**
 * Parses and validates manifest text.
 *
 * @throws {ManifestError} naming `file`, each bad field and (YAML) its line.
 */
export function parseManifest(text: string, file: string): DeploymentManifest {
  if (text.length > MAX_VALUE_BYTES) {
    throw new ManifestError(
      `Invalid manifest ${file}: ${text.length} bytes, more than the ${MAX_VALUE_BYTES} allowed`,
    );
  }
  const format = detectFormat(file, text);
  if (format === "yaml" && text.length > MAX_YAML_MANIFEST_BYTES) {
    throw new ManifestError(
      `Invalid manifest ${file}: ${text.length} bytes of YAML, more than the ` +
        `${MAX_YAML_MANIFEST_BYTES} allowed; write larger manifests as JSON`,
    );
  }
  let data: unknown;
  let locate: Locate = () => undefined;
  if (format === "yaml") ({ data, locate } = parseYaml(text, file));
  else if (format === "toml") data = parseTomlText(text, file);
  else data = parseJsonText(text, file);

  const result = DeploymentManifest.safeParse(data);
  if (result.success) return result.data;
  // An unknown key becomes an issue at the key itself, so its own line is found.
  const issues = explainIssues(DeploymentManifest, result.error.issues);
  const details = issues.slice(0, 10).map((issue) => {
    const message = formatIssueMessage(issue);
    const line = locate(issue.path);
    return `${formatPath(issue.path)}: ${message}${line !== undefined ? ` (line ${line})` : ""}`;
  });
  if (issues.length > 10) details.push(`… and ${issues.length - 10} more problem(s)`);
  const [first] = issues;
  if (first === undefined) {
    throw new Error(`zod reported an invalid manifest ${file} without an issue`);
  }
  throw new ManifestError(
    `Invalid manifest ${file}: ${formatPath(first.path)}: ${formatIssueMessage(first)}`,
    details,
  );
}

/** Reads and parses a manifest file (`-` reads standard input). */
export async function loadManifest(file: string): Promise<DeploymentManifest> {
  let text: string;
  try {
    text = file === "-"
      ? await new Response(Deno.stdin.readable).text()
      : await Deno.readTextFile(file);
  } catch (e) {
    throw new ManifestError(`Cannot read manifest ${file}: ${(e as Error).message}`, [], {
      cause: e,
    });
  }
  return parseManifest(text, file === "-" ? "(stdin)" : file);
}
