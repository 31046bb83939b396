/**
 * Parsing deployment manifests from a file's text: YAML (one or several
 * `---`-separated documents), TOML or JSON (by extension, else by content),
 * validated with the contract's schema. Pure: problems are collected, not
 * thrown, so a set of files reports every one; errors name the file, the
 * document, the field path and, for YAML, the line.
 *
 * @module
 */

import { type Document, isMap, isNode, isScalar, LineCounter, parseAllDocuments } from "yaml";
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

/** What is wrong with one document of a manifest file. */
export interface DocumentProblem {
  /** The file as the user named it (`(stdin)` for standard input). */
  file: string;
  /** 1-based position in a multi-document YAML file; absent when the file holds one. */
  document?: number;
  /** One line: the first problem, e.g. `score.services[0].image: …` or `not valid YAML`. */
  summary: string;
  /** Every problem, one a line, with the line number where the format has them. */
  details: string[];
  /** The file could not be read at all (the summary says why). */
  unreadable?: true;
}

/** One manifest read from a file, with where it came from. */
export interface FileManifest {
  manifest: DeploymentManifest;
  file: string;
  /** 1-based position in a multi-document YAML file; absent when the file holds one. */
  document?: number;
}

/** What one file holds: its valid manifests and the problems of the others. */
export interface ParsedFile {
  manifests: FileManifest[];
  problems: DocumentProblem[];
}

/** `web.yaml` or `apps.yaml (document 2)`. Pure. */
export function documentLabel(where: { file: string; document?: number }): string {
  return where.document === undefined ? where.file : `${where.file} (document ${where.document})`;
}

/** One YAML document's data, or its syntax problems. */
type YamlDocument =
  | { ok: true; data: unknown; locate: Locate; empty: boolean }
  | { ok: false; summary: string; details: string[] };

function readYamlDocument(doc: Document, lineCounter: LineCounter): YamlDocument {
  if (doc.errors.length > 0) {
    return {
      ok: false,
      summary: "not valid YAML",
      details: doc.errors.slice(0, 5).map((e) => {
        const pos = e.linePos?.[0];
        const first = (e.message.split("\n")[0] ?? "").replace(/ at line \d+, column \d+:?$/, "");
        return pos ? `line ${pos.line}, column ${pos.col}: ${first}` : first;
      }),
    };
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
  try {
    const data = doc.toJS();
    return { ok: true, data, locate, empty: data === null || data === undefined };
  } catch (e) {
    // The yaml library refuses alias bombs ("billion laughs") here, not in parsing.
    return { ok: false, summary: "not valid YAML", details: [(e as Error).message] };
  }
}

function parseTomlText(text: string): { data: unknown } | { summary: string; details: string[] } {
  try {
    return { data: parseToml(text) };
  } catch (e) {
    if (e instanceof TomlError) {
      const first = e.message.split("\n")[0];
      return {
        summary: "not valid TOML",
        details: [`line ${e.line}, column ${e.column}: ${first}`],
      };
    }
    throw e;
  }
}

function parseJsonText(text: string): { data: unknown } | { summary: string; details: string[] } {
  try {
    return { data: JSON.parse(text) };
  } catch (e) {
    return { summary: "not valid JSON", details: [(e as Error).message] };
  }
}

/** Validates parsed data as a manifest; the problems name each field and (YAML) its line. */
function validate(
  data: unknown,
  locate: Locate,
): { ok: true; manifest: DeploymentManifest } | { ok: false; summary: string; details: string[] } {
  const result = DeploymentManifest.safeParse(data);
  if (result.success) return { ok: true, manifest: result.data };
  // An unknown key becomes an issue at the key itself, so its own line is found.
  const issues = explainIssues(DeploymentManifest, result.error.issues);
  const details = issues.slice(0, 10).map((issue) => {
    const message = formatIssueMessage(issue);
    const line = locate(issue.path);
    return `${formatPath(issue.path)}: ${message}${line !== undefined ? ` (line ${line})` : ""}`;
  });
  if (issues.length > 10) details.push(`… and ${issues.length - 10} more problem(s)`);
  const [first] = issues;
  if (first === undefined) throw new Error("zod reported an invalid manifest without an issue");
  return { ok: false, summary: `${formatPath(first.path)}: ${formatIssueMessage(first)}`, details };
}

/**
 * Parses and validates the manifests of one file; never throws for bad
 * input. A YAML file may hold several documents separated by `---` (empty
 * ones are skipped); TOML and JSON hold one. Pure.
 */
export function parseManifestFile(text: string, file: string): ParsedFile {
  const whole = (summary: string, details: string[] = []): ParsedFile => ({
    manifests: [],
    problems: [{ file, summary, details }],
  });
  if (text.length > MAX_VALUE_BYTES) {
    return whole(`${text.length} bytes, more than the ${MAX_VALUE_BYTES} allowed`);
  }
  const format = detectFormat(file, text);
  if (format === "yaml" && text.length > MAX_YAML_MANIFEST_BYTES) {
    return whole(
      `${text.length} bytes of YAML, more than the ${MAX_YAML_MANIFEST_BYTES} allowed; ` +
        "split it into several files or write larger manifests as JSON",
    );
  }
  if (format !== "yaml") {
    const parsed = format === "toml" ? parseTomlText(text) : parseJsonText(text);
    if (!("data" in parsed)) return whole(parsed.summary, parsed.details);
    const checked = validate(parsed.data, () => undefined);
    return checked.ok
      ? { manifests: [{ manifest: checked.manifest, file }], problems: [] }
      : whole(checked.summary, checked.details);
  }
  const lineCounter = new LineCounter();
  const docs = [...parseAllDocuments(text, { lineCounter })];
  const out: ParsedFile = { manifests: [], problems: [] };
  const several = docs.length > 1;
  docs.forEach((doc, i) => {
    const where = several ? { file, document: i + 1 } : { file };
    const read = readYamlDocument(doc, lineCounter);
    if (!read.ok) {
      out.problems.push({ ...where, summary: read.summary, details: read.details });
      return;
    }
    // `---` at the start or end of a stream, or a document of comments only.
    if (read.empty && several) return;
    const checked = validate(read.data, read.locate);
    if (checked.ok) out.manifests.push({ ...where, manifest: checked.manifest });
    else out.problems.push({ ...where, summary: checked.summary, details: checked.details });
  });
  return out;
}

/**
 * The error for `problems` (at least one): one problem reads as before
 * multi-file sets (`Invalid manifest FILE: field: problem` and its details);
 * several name every file and document, each with its details.
 */
export function problemsError(problems: readonly DocumentProblem[]): ManifestError {
  const [first] = problems;
  if (first === undefined) throw new Error("problemsError needs at least one problem");
  if (problems.length === 1) {
    const what = first.unreadable ? "Cannot read manifest" : "Invalid manifest";
    return new ManifestError(`${what} ${documentLabel(first)}: ${first.summary}`, [
      ...first.details,
    ]);
  }
  const files = new Set(problems.map((p) => p.file)).size;
  return new ManifestError(
    `${problems.length} invalid manifests in ${files} file(s); nothing was changed`,
    problems.flatMap((p) => [
      // A field problem's first detail repeats the summary, with its line.
      p.details[0]?.startsWith(p.summary)
        ? `${documentLabel(p)}:`
        : `${documentLabel(p)}: ${p.summary}`,
      ...p.details.map((d) => `  ${d}`),
    ]),
  );
}

/**
 * Parses and validates a file holding exactly one manifest.
 *
 * @throws {ManifestError} naming `file`, each bad field and (YAML) its line.
 */
export function parseManifest(text: string, file: string): DeploymentManifest {
  const parsed = parseManifestFile(text, file);
  if (parsed.problems.length > 0) throw problemsError(parsed.problems);
  const [only, ...more] = parsed.manifests;
  if (only === undefined) {
    throw problemsError([{ file, summary: "(root): no manifest", details: [] }]);
  }
  if (more.length > 0) {
    throw problemsError([{
      file,
      summary: `(root): ${parsed.manifests.length} manifests, expected one`,
      details: [],
    }]);
  }
  return only.manifest;
}
