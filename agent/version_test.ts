import { AGENT_VERSION } from "./version.ts";

Deno.test("AGENT_VERSION matches agent/deno.json", async () => {
  const manifest = JSON.parse(
    await Deno.readTextFile(new URL("./deno.json", import.meta.url)),
  ) as { version: string };
  if (manifest.version !== AGENT_VERSION) {
    throw new Error(
      `agent/version.ts says ${AGENT_VERSION} but agent/deno.json says ${manifest.version}`,
    );
  }
});
