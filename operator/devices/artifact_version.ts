/**
 * Which agent version an artifact says it is: the `AGENT_VERSION = "…"`
 * literal of agent/version.ts, which both artifacts carry as written (the
 * bundle as JavaScript, the executable in its embedded sources). `agent
 * publish --version V` refuses an artifact that says another version, so a
 * release's name is what its agents report. Pure.
 *
 * @module
 */

const MARKER = new TextEncoder().encode('AGENT_VERSION = "');
/** Longest version read after the marker (`AgentReleaseVersion` allows 64). */
const MAX_VERSION_BYTES = 64;

/** Every distinct version `bytes` declares, in the order found (empty: none). */
export function declaredAgentVersions(bytes: Uint8Array): string[] {
  const found = new Set<string>();
  const first = MARKER[0]!;
  let at = bytes.indexOf(first);
  while (at >= 0 && at + MARKER.length < bytes.length) {
    if (matchesAt(bytes, at)) {
      const start = at + MARKER.length;
      const end = bytes.indexOf(0x22, start); // the closing quote
      if (end > start && end - start <= MAX_VERSION_BYTES) {
        const version = new TextDecoder().decode(bytes.subarray(start, end));
        if (/^[A-Za-z0-9.+_-]+$/.test(version)) found.add(version);
      }
    }
    at = bytes.indexOf(first, at + 1);
  }
  return [...found];
}

function matchesAt(bytes: Uint8Array, at: number): boolean {
  for (let i = 1; i < MARKER.length; i++) if (bytes[at + i] !== MARKER[i]) return false;
  return true;
}

/**
 * Why `bytes` may not be published as `version`, or undefined when it says
 * exactly that version.
 */
export function artifactVersionProblem(bytes: Uint8Array, version: string): string | undefined {
  const declared = declaredAgentVersions(bytes);
  if (declared.length === 0) {
    return "it does not say which agent version it is (no AGENT_VERSION found): " +
      "is it a drover-agent build (deno task compile or bundle)?";
  }
  if (declared.length === 1 && declared[0] === version) return undefined;
  return `it reports agent version ${declared.join(", ")}, not ${version}`;
}
