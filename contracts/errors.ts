/**
 * Turning zod issues into messages a person can act on.
 *
 * @module
 */

import type { z } from "zod";

/** Formats an issue path as `score.services[0].ports[1]`. */
export function formatPath(path: ReadonlyArray<PropertyKey>): string {
  let out = "";
  for (const segment of path) {
    if (typeof segment === "number") out += `[${segment}]`;
    else if (typeof segment === "string" && /^[A-Za-z_][A-Za-z0-9_-]*$/.test(segment)) {
      out += out === "" ? segment : `.${segment}`;
    } else out += `[${JSON.stringify(String(segment))}]`;
  }
  return out === "" ? "(root)" : out;
}

/**
 * Longest line the formatters here write. Messages quote the rejected value,
 * which can be as large as the input (a 500 kB image name); clipped, a
 * message stays readable and fits in a status value.
 */
export const MAX_ISSUE_LINE_CHARS = 300;

/** Clips `line` to {@linkcode MAX_ISSUE_LINE_CHARS}, saying how long it was. */
export function clipLine(line: string): string {
  if (line.length <= MAX_ISSUE_LINE_CHARS) return line;
  return `${line.slice(0, MAX_ISSUE_LINE_CHARS - 30)}… (${line.length} chars in all)`;
}

/** The message of one issue, with the detail zod keeps in nested issues brought out. */
export function formatIssueMessage(issue: z.core.$ZodIssue): string {
  return clipLine(rawIssueMessage(issue));
}

function rawIssueMessage(issue: z.core.$ZodIssue): string {
  // zod words a missing field as a type error ("expected object, received undefined"); a
  // person reading a manifest or config needs to hear that the field is missing.
  if (issue.code === "invalid_type" && / received undefined$/.test(issue.message)) {
    return "required";
  }
  if (issue.code === "unrecognized_keys") {
    return `unknown key(s) ${issue.keys.map((k) => JSON.stringify(k)).join(", ")}`;
  }
  if (issue.code === "invalid_key" || issue.code === "invalid_element") {
    // zod says "Invalid key in record"; the nested issue says what is wrong with it.
    const what = issue.code === "invalid_key" ? "invalid key" : "invalid value";
    return `${what}: ${issue.issues.map((i) => i.message).join("; ")}`;
  }
  if (issue.code === "invalid_union") {
    // zod says "Invalid input"; the one alternative whose shape fits the value says why.
    const fitting = issue.errors.filter((branch) =>
      !branch.some((i) => i.code === "invalid_type" && i.path.length === 0)
    );
    const [branch] = fitting;
    if (fitting.length === 1 && branch !== undefined && branch.length > 0) {
      return branch.map((i) =>
        i.path.length === 0 ? rawIssueMessage(i) : `${formatPath(i.path)}: ${rawIssueMessage(i)}`
      ).join("; ");
    }
  }
  return plainMessage(issue) ?? issue.message;
}

/** How a value of each of zod's type names reads in a message. */
const TYPE_WORDS: Record<string, string> = {
  string: "a string",
  number: "a number",
  int: "a whole number",
  boolean: "true or false",
  array: "a list",
  object: "a mapping (key: value)",
  null: "null",
};

function typeWord(name: string): string {
  return TYPE_WORDS[name] ?? name;
}

/**
 * zod's own wording (`Too small: expected array to have >=1 items`) in words a person uses
 * (`must not be empty`); `undefined` for an issue whose message a schema wrote itself, which
 * is kept. Pure.
 */
export function plainMessage(issue: z.core.$ZodIssue): string | undefined {
  switch (issue.code) {
    case "too_small": {
      if (!issue.message.startsWith("Too small:")) return undefined;
      const n = Number(issue.minimum);
      if (issue.origin === "array" || issue.origin === "string" || issue.origin === "set") {
        const least = issue.inclusive ? n : n + 1;
        const unit = issue.origin === "string" ? "character" : "item";
        return least <= 1 ? "must not be empty" : `needs at least ${least} ${unit}s`;
      }
      if (issue.origin === "number" || issue.origin === "int" || issue.origin === "bigint") {
        return issue.inclusive ? `must be at least ${n}` : `must be greater than ${n}`;
      }
      return undefined;
    }
    case "too_big": {
      if (!issue.message.startsWith("Too big:")) return undefined;
      const n = Number(issue.maximum);
      if (issue.origin === "array" || issue.origin === "string" || issue.origin === "set") {
        const most = issue.inclusive ? n : n - 1;
        const unit = issue.origin === "string" ? "character" : "item";
        return `must have at most ${most} ${unit}${most === 1 ? "" : "s"}`;
      }
      if (issue.origin === "number" || issue.origin === "int" || issue.origin === "bigint") {
        return issue.inclusive ? `must be at most ${n}` : `must be less than ${n}`;
      }
      return undefined;
    }
    case "invalid_type": {
      const received = /^Invalid input: expected \S+, received (\S+)$/.exec(issue.message)?.[1];
      if (received === undefined) return undefined;
      if (issue.expected === "int" && received === "number") return "must be a whole number";
      return `expected ${typeWord(issue.expected)}, got ${typeWord(received)}`;
    }
    case "invalid_value": {
      if (!/^Invalid (option|input): expected /.test(issue.message)) return undefined;
      const values = issue.values.map((v) => JSON.stringify(v));
      return values.length === 1
        ? `expected ${values[0]}`
        : `expected one of ${values.slice(0, -1).join(", ")} or ${values.at(-1)}`;
    }
    case "invalid_union": {
      if (issue.message !== "Invalid input") return undefined;
      const expected = new Set<string>();
      for (const branch of issue.errors) {
        for (const inner of branch) {
          if (inner.code !== "invalid_type" || inner.path.length > 0) return undefined;
          expected.add(typeWord(inner.expected));
        }
      }
      return expected.size === 0 ? undefined : `expected ${[...expected].join(" or ")}`;
    }
    default:
      return undefined;
  }
}

/**
 * One line per issue: `"<path>: <message>"`, at most `max` lines. Given the `schema` that
 * produced `error`, an unknown key gets its own line with a suggestion (see
 * {@linkcode explainIssues}).
 */
export function formatZodIssues(error: z.ZodError, max = 10, schema?: z.ZodType): string {
  const issues = schema === undefined ? error.issues : explainIssues(schema, error.issues);
  const lines = issues.slice(0, max).map((issue) =>
    clipLine(`${formatPath(issue.path)}: ${formatIssueMessage(issue)}`)
  );
  if (issues.length > max) lines.push(`… and ${issues.length - max} more problem(s)`);
  return lines.join("\n");
}

/**
 * The issues as a person should read them: zod reports unknown keys as one issue at the
 * object holding them; here each becomes its own issue at the key's path (so its own line
 * can be found), worded {@linkcode unknownKeyMessage} with the key of `schema` it most
 * likely meant. Other issues are kept as they are. Pure.
 */
export function explainIssues(
  schema: z.ZodType,
  issues: ReadonlyArray<z.core.$ZodIssue>,
): z.core.$ZodIssue[] {
  return issues.flatMap((issue): z.core.$ZodIssue[] => {
    if (issue.code !== "unrecognized_keys") return [issue];
    const known = knownKeysAt(schema, issue.path);
    return issue.keys.map((key) => ({
      code: "custom",
      path: [...issue.path, key],
      message: unknownKeyMessage(suggestKey(key, known)),
      input: undefined,
    }));
  });
}

/** `unknown key`, plus `; did you mean "x"?` when there is a likely intended key. Pure. */
export function unknownKeyMessage(suggestion: string | undefined): string {
  return suggestion === undefined
    ? "unknown key"
    : `unknown key; did you mean ${JSON.stringify(suggestion)}?`;
}

/**
 * The key of `known` that `unknown` most likely misspells: the closest by edit distance
 * within a third of the length (`heartbeat_secs` → `heartbeat_seconds`, `imgae` → `image`),
 * or one that is a prefix of the other (`enviroment` → `env`, `label` → `labels`). Pure.
 */
export function suggestKey(unknown: string, known: readonly string[]): string | undefined {
  const u = unknown.toLowerCase();
  let best: { key: string; distance: number } | undefined;
  for (const key of known) {
    const k = key.toLowerCase();
    const distance = editDistance(u, k);
    const close = distance <= Math.max(1, Math.floor(Math.max(u.length, k.length) / 3));
    const prefix = Math.min(u.length, k.length) >= 3 && (u.startsWith(k) || k.startsWith(u));
    if (!close && !prefix) continue;
    if (best === undefined || distance < best.distance) best = { key, distance };
  }
  return best?.key;
}

/**
 * Edit distance: insertions, deletions, substitutions and swaps of two adjacent characters
 * (`imgae` → `image` is 1), each counting 1 (optimal string alignment). Pure.
 */
export function editDistance(a: string, b: string): number {
  let before: number[] = [];
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      // Every index here is within 0..b.length, which all three rows hold.
      current[j] = Math.min(
        previous[j]! + 1,
        current[j - 1]! + 1,
        previous[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1),
      );
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) {
        current[j] = Math.min(current[j]!, before[j - 2]! + 1);
      }
    }
    before = previous;
    previous = current;
  }
  return previous[b.length]!;
}

/**
 * The keys an object schema allows at `path` inside `schema` (through optional, default,
 * pipe, array, record and union wrappers; every option of a union contributes). Pure.
 */
export function knownKeysAt(schema: z.ZodType, path: ReadonlyArray<PropertyKey>): string[] {
  let current = unwrap(schema as unknown as z.core.$ZodType);
  for (const segment of path) {
    current = current.flatMap((s) => unwrap(...childSchemas(s, segment)));
  }
  const keys = new Set<string>();
  for (const s of current) {
    if (s._zod.def.type === "object") {
      for (const key of Object.keys((s as z.core.$ZodObject)._zod.def.shape)) keys.add(key);
    }
  }
  return [...keys];
}

/** The schemas a value may be checked against once wrappers and unions are opened. */
function unwrap(...schemas: z.core.$ZodType[]): z.core.$ZodType[] {
  return schemas.flatMap((s): z.core.$ZodType[] => {
    const def = s._zod.def as unknown as Record<string, unknown> & { type: string };
    switch (def.type) {
      case "optional":
      case "nullable":
      case "default":
      case "prefault":
      case "nonoptional":
      case "readonly":
      case "catch":
        return unwrap(def.innerType as z.core.$ZodType);
      case "pipe":
        return unwrap(def.in as z.core.$ZodType);
      case "lazy":
        return unwrap((def.getter as () => z.core.$ZodType)());
      case "union":
        return unwrap(...(def.options as z.core.$ZodType[]));
      case "intersection":
        return unwrap(def.left as z.core.$ZodType, def.right as z.core.$ZodType);
      default:
        return [s];
    }
  });
}

/** What the value at `segment` of a value checked by `s` is checked against. */
function childSchemas(s: z.core.$ZodType, segment: PropertyKey): z.core.$ZodType[] {
  const def = s._zod.def as unknown as Record<string, unknown> & { type: string };
  switch (def.type) {
    case "object": {
      const shape = def.shape as Record<string, z.core.$ZodType>;
      // Own keys only: a path segment "constructor" must not find Object.prototype's.
      const child = Object.hasOwn(shape, String(segment)) ? shape[String(segment)] : undefined;
      return child !== undefined ? [child] : [];
    }
    case "array":
      return typeof segment === "number" ? [def.element as z.core.$ZodType] : [];
    case "record":
      return [def.valueType as z.core.$ZodType];
    case "tuple": {
      const items = def.items as z.core.$ZodType[];
      const item = typeof segment === "number" ? items[segment] : undefined;
      return item !== undefined ? [item] : [];
    }
    default:
      return [];
  }
}
