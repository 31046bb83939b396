/**
 * JSON Schema for the wire types, so clients in other languages can validate
 * what they put into or read from KV. Generated from the zod schemas; the
 * checked-in copies under `schema/` are kept current by a test.
 *
 * @module
 */

import { z } from "zod";
import { DesiredState } from "./desired_state.ts";
import { AgentStatus } from "./agent_status.ts";
import { DeploymentManifest } from "./manifest.ts";
import { AgentConfig } from "./agent_config.ts";
import { DeviceRegistration } from "./device_registration.ts";
import { EventsReply, LogsReply, LogsRequest, PingReply } from "./device_commands.ts";
import { Heartbeat } from "./subjects.ts";
import {
  AgentUpdateTarget,
  ArtifactRequest,
  ArtifactTargetReply,
  ReleaseManifest,
} from "./agent_update.ts";

const SCHEMAS: Record<string, z.ZodType> = {
  "desired-state": DesiredState,
  "agent-status": AgentStatus,
  "deployment-manifest": DeploymentManifest,
  "agent-config": AgentConfig,
  "device-registration": DeviceRegistration,
  "logs-request": LogsRequest,
  "logs-reply": LogsReply,
  "ping-reply": PingReply,
  "events-reply": EventsReply,
  heartbeat: Heartbeat,
  "release-manifest": ReleaseManifest,
  "artifact-request": ArtifactRequest,
  "artifact-target-reply": ArtifactTargetReply,
  "agent-update-target": AgentUpdateTarget,
};

/**
 * Renders every wire schema as pretty JSON text, keyed by file name
 * (`desired-state.schema.json`, …). Input form: defaults are optional.
 */
export function renderJsonSchemas(): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, schema] of Object.entries(SCHEMAS)) {
    const json = z.toJSONSchema(schema, { io: "input", unrepresentable: "any" });
    out[`${name}.schema.json`] = JSON.stringify({ title: name, ...json }, null, 2) + "\n";
  }
  return out;
}
