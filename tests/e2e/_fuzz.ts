/**
 * Seeded, reproducible generators of hostile input for the fuzz tests: a small
 * PRNG and mutators that break a valid JSON document in the ways an attacker
 * or a buggy client would (truncation, wrong types, huge strings and arrays,
 * deep nesting, prototype keys, unicode, names with dots or slashes, ports out
 * of range, duplicates). The seed is printed by the tests, so a failure can be
 * replayed with `DROVER_FUZZ_SEED=<seed>`.
 *
 * @module
 */

/** mulberry32: tiny, fast, good enough to drive mutations reproducibly. */
export class Rng {
  #state: number;
  constructor(readonly seed: number) {
    this.#state = seed >>> 0;
  }
  /** Uniform in [0, 1). */
  next(): number {
    this.#state = (this.#state + 0x6d2b79f5) >>> 0;
    let t = this.#state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  /** Integer in [lo, hi]. */
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.next() * (hi - lo + 1));
  }
  /** True with probability `p`. */
  chance(p: number): boolean {
    return this.next() < p;
  }
  /** One element of `items`. */
  pick<T>(items: readonly T[]): T {
    const item = items[Math.floor(this.next() * items.length)];
    if (item === undefined) throw new Error("Cannot pick from an empty list");
    return item;
  }
}

/** The seed of this run: `DROVER_FUZZ_SEED` or a fresh one. */
export function fuzzSeed(): number {
  const fromEnv = Deno.env.get("DROVER_FUZZ_SEED");
  return fromEnv ? Number(fromEnv) : Math.floor(Math.random() * 2 ** 31);
}

/** Stays under NATS' default 1 MiB max payload (headers included). */
export const MAX_FUZZ_BYTES = 1_000_000;

/** Strings that break names, paths, subjects, shells and URLs. */
export const NASTY_STRINGS: readonly string[] = [
  "",
  " ",
  "a.b",
  "a/b",
  "../../etc/passwd",
  "/etc/shadow",
  "a b",
  "$(reboot)",
  "`id`",
  "; rm -rf /",
  "a\nb",
  "nul\u0000byte",
  "Ünïcödé",
  "😀",
  "\u202eevil",
  "\ud800",
  "*",
  ">",
  "a.>",
  "%2e%2e%2f",
  "http://evil/x",
  "-rf",
  "UPPER",
  "x".repeat(64),
  "__proto__",
  "constructor",
];

/** Values of every JSON type, some odd. Use {@linkcode oddValue}: mutations edit what they insert. */
export const ODD_VALUES: readonly unknown[] = [
  null,
  true,
  false,
  0,
  -1,
  1.5,
  1e308,
  -0,
  2 ** 53 + 1,
  "",
  "0",
  [],
  [null],
  {},
  { "": "" },
];

/**
 * A fresh copy of one of {@linkcode ODD_VALUES}. Later mutations edit the tree in place, so
 * inserting the shared `{}` or `[]` itself would let them grow across documents: replaying a
 * seed would no longer give the same documents, and the documents would keep getting bigger.
 */
function oddValue(rng: Rng): unknown {
  return structuredClone(rng.pick(ODD_VALUES));
}

const PROTO_KEYS = ["__proto__", "constructor", "prototype", "toString", "hasOwnProperty"];

/** Sets an own enumerable property, even for `__proto__`. */
export function setOwn(target: Record<string, unknown>, key: string, value: unknown): void {
  Object.defineProperty(target, key, {
    value,
    enumerable: true,
    configurable: true,
    writable: true,
  });
}

type Container = Record<string, unknown> | unknown[];
type Slot = { parent: Container; key: string | number };

/**
 * The (parent, key) slots of a JSON tree down to `maxDepth` (iterative: an
 * earlier mutation may have nested the tree thousands of levels deep).
 */
function slots(root: unknown, maxDepth = 32): Slot[] {
  const out: Slot[] = [];
  const stack: Array<{ value: unknown; depth: number }> = [{ value: root, depth: 0 }];
  while (stack.length > 0) {
    const { value, depth } = stack.pop()!;
    if (depth >= maxDepth || value === null || typeof value !== "object") continue;
    const entries: Array<[string | number, unknown]> = Array.isArray(value)
      ? value.slice(0, 1_000).map((child, i) => [i, child])
      : Object.entries(value).slice(0, 1_000);
    for (const [key, child] of entries) {
      out.push({ parent: value as Container, key });
      stack.push({ value: child, depth: depth + 1 });
    }
  }
  return out;
}

function setSlot(slot: Slot, value: unknown): void {
  if (Array.isArray(slot.parent)) slot.parent[slot.key as number] = value;
  else setOwn(slot.parent, slot.key as string, value);
}

function deepNest(rng: Rng, depth: number): unknown {
  // Built iteratively: the generator itself must not blow the stack.
  let v: unknown = oddValue(rng);
  for (let i = 0; i < depth; i++) v = rng.chance(0.5) ? [v] : { a: v };
  return v;
}

function hugeString(rng: Rng): string {
  const unit = rng.pick(["x", "é", "😀", "a.b/", '\\"', "\u0000"]);
  return unit.repeat(Math.floor(rng.int(10_000, 240_000) / unit.length));
}

function portMutation(rng: Rng): string {
  return rng.pick([
    `${rng.int(65536, 999999)}:80`,
    `80:${rng.int(65536, 999999)}`,
    "0:80",
    "-1:80",
    "80:0",
    "80:80/sctp",
    "1.2.3.4.5:80:80",
    "::1:80:80",
    "[zz]:80:80",
    "80:80:80:80",
    "",
    ":",
    "80:",
    "99999999999999999999:80",
  ]);
}

function isObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === "object" && !Array.isArray(v);
}

/** One structural mutation of `doc` (in place). */
function mutateTree(rng: Rng, doc: Record<string, unknown>): void {
  const all = slots(doc);
  // Earlier rounds may have deleted every key: then the only slots are new top-level keys.
  const slot: Slot = all.length > 0
    ? rng.pick(all)
    : { parent: doc, key: rng.pick(["deployment", "score", "extra"]) };
  // Earlier mutations may have turned score or services into anything.
  const score = doc.score;
  const rawServices = isObject(score) ? score.services : undefined;
  const services = Array.isArray(rawServices) && rawServices.every(isObject)
    ? rawServices as Record<string, unknown>[]
    : undefined;
  switch (rng.int(0, 11)) {
    case 0: // wrong type anywhere
      setSlot(slot, oddValue(rng));
      break;
    case 1: // nasty string anywhere
      setSlot(slot, rng.pick(NASTY_STRINGS));
      break;
    case 2: // prototype-ish key on an object
    {
      const objects = all.map((s) => (s.parent as Record<string, unknown>[])[s.key as never])
        .filter((v) => v !== null && typeof v === "object" && !Array.isArray(v)) as Record<
          string,
          unknown
        >[];
      const target = objects.length > 0 && rng.chance(0.7) ? rng.pick(objects) : doc;
      setOwn(target, rng.pick(PROTO_KEYS), rng.chance(0.5) ? { polluted: true } : "x");
      break;
    }
    case 3: // huge string
      setSlot(slot, hugeString(rng));
      break;
    case 4: // huge array
    {
      // Distinct elements: filling with one shared `{}` would let a later round's huge string
      // or deep nesting inside it repeat 150 000 times (minutes of JSON.stringify per document).
      const element = rng.pick(["x", 1, null, {}]);
      setSlot(
        slot,
        Array.from({ length: rng.int(10_000, 150_000) }, () => structuredClone(element)),
      );
      break;
    }
    case 5: // deep nesting
      setSlot(slot, deepNest(rng, rng.int(100, 1_500)));
      break;
    case 6: // service or deployment names with dots, slashes, unicode
      if (services && services.length > 0 && rng.chance(0.6)) {
        rng.pick(services).name = rng.pick(NASTY_STRINGS);
      } else doc.deployment = rng.pick(NASTY_STRINGS);
      break;
    case 7: // ports out of range or malformed
      if (services && services.length > 0) {
        rng.pick(services).ports = [portMutation(rng)];
      } else setSlot(slot, portMutation(rng));
      break;
    case 8: // duplicate service names
      if (services && services.length > 0) {
        const s = rng.pick(services);
        services.push(s); // the same object twice serialises as a duplicate
      } else setSlot(slot, []);
      break;
    case 9: // delete a key
      if (!Array.isArray(slot.parent)) delete slot.parent[slot.key as string];
      else slot.parent.splice(slot.key as number, 1);
      break;
    case 10: // unknown score type or restart policy
      if (isObject(score) && rng.chance(0.5)) score.type = rng.pick(NASTY_STRINGS);
      else if (services && services.length > 0) {
        rng.pick(services).restart = rng.pick(NASTY_STRINGS);
      }
      break;
    default: { // too many services
      const s = services?.[0];
      if (services && s !== undefined) {
        const image = typeof s.image === "string" ? s.image.slice(0, 100) : "x";
        for (let i = 0; i < rng.int(65, 300); i++) services.push({ name: `s${i}`, image });
      }
      break;
    }
  }
}

const encoder = new TextEncoder();

/** Byte-level damage to a serialised document. */
function mutateBytes(rng: Rng, text: string): Uint8Array {
  switch (rng.int(0, 5)) {
    case 0: // truncated JSON
      return encoder.encode(text.slice(0, rng.int(0, Math.max(0, text.length - 1))));
    case 1: { // invalid UTF-8
      const bytes = encoder.encode(text);
      const out = new Uint8Array(bytes.length + 2);
      const at = rng.int(0, bytes.length);
      out.set(bytes.subarray(0, at));
      out.set([0xff, 0xfe], at);
      out.set(bytes.subarray(at), at + 2);
      return out;
    }
    case 2: // deep nesting as text, deeper than the parser may like
    {
      const depth = rng.int(1_000, 200_000);
      return encoder.encode(`{"deployment":"x","score":${"[".repeat(depth)}${"]".repeat(depth)}}`);
    }
    case 3: // not JSON at all
      return encoder.encode(
        rng.pick(["", "null", "[]", "42", '"str"', "{", "}", "NaN", "undefined"]),
      );
    case 4: // trailing garbage
      return encoder.encode(text + rng.pick([",", "}", " x", "\u0000"]));
    default: // duplicate keys in the text (last one wins in JSON.parse)
      return encoder.encode(text.replace(/^\{/, '{"deployment":"dup",'));
  }
}

/**
 * One mutated document: 1–3 structural mutations of a deep copy of `base`,
 * serialised, then with probability 0.25 damaged at byte level. Never larger
 * than {@linkcode MAX_FUZZ_BYTES} (a too-large result is truncated, which is
 * still a bad value).
 */
export function mutate(rng: Rng, base: unknown): Uint8Array {
  const doc = structuredClone(base) as Record<string, unknown>;
  const rounds = rng.int(1, 3);
  for (let i = 0; i < rounds; i++) mutateTree(rng, doc);
  let text: string;
  try {
    text = JSON.stringify(doc);
  } catch {
    // Mutations compounded past what a string can hold: a plain bad value instead.
    text = JSON.stringify({ deployment: "x".repeat(100), score: null });
  }
  const bytes = rng.chance(0.25) ? mutateBytes(rng, text) : encoder.encode(text);
  return bytes.length > MAX_FUZZ_BYTES ? bytes.subarray(0, MAX_FUZZ_BYTES) : bytes;
}

/**
 * A mutated document the `isBad` oracle rejects: mutates until it does (a
 * mutation can leave a document valid, e.g. deleting an optional key), and
 * falls back to truncation.
 */
export function badValue(
  rng: Rng,
  base: unknown,
  isBad: (bytes: Uint8Array) => boolean,
): Uint8Array {
  for (let i = 0; i < 10; i++) {
    const bytes = mutate(rng, base);
    if (isBad(bytes)) return bytes;
  }
  const text = JSON.stringify(base);
  return encoder.encode(text.slice(0, text.length - 1));
}
