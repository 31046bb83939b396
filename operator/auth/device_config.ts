/**
 * The agent config (`<id>.toml`) that `device add` hands to a new device.
 *
 * @module
 */

import { stringify } from "smol-toml";
import { AgentConfig, type AgentConfigInput, formatZodIssues } from "@drover/contracts";
import { AuthInputError } from "./errors.ts";

/** What a device's generated config contains. */
export interface DeviceConfigInput {
  deviceId: string;
  labels: Record<string, string>;
  /** NATS server URLs the agent connects to. */
  servers: string[];
  /** Absolute path of the device's creds file on the device. */
  credsPath: string;
  /** Absolute path of the CA that signed the server certificate, when the server uses TLS. */
  tlsCa?: string;
  /** The release key's public half: agents trust only releases it signed (self-update). */
  releaseKey?: string;
  /** Absolute path of the device's sealing key (xkey seed) on the device. */
  sealingKeyPath?: string;
}

/**
 * Renders the agent config as TOML. The result is validated with the agent's
 * own schema, so `device add` can never hand out a config the agent rejects.
 *
 * @throws {AuthInputError} naming the field when the input does not make a valid config.
 */
export function renderDeviceToml(input: DeviceConfigInput): string {
  const config: AgentConfigInput = {
    agent: { device_id: input.deviceId, labels: input.labels },
    nats: {
      servers: input.servers,
      creds: input.credsPath,
      ...(input.tlsCa !== undefined ? { tls_ca: input.tlsCa } : {}),
    },
    ...(input.releaseKey !== undefined ? { update: { release_key: input.releaseKey } } : {}),
    ...(input.sealingKeyPath !== undefined ? { secrets: { key: input.sealingKeyPath } } : {}),
  };
  const checked = AgentConfig.safeParse(config);
  if (!checked.success) {
    throw new AuthInputError(
      `Cannot write an agent config for device "${input.deviceId}": ${
        formatZodIssues(checked.error)
      }`,
    );
  }
  return [
    `# Drover agent config for device "${input.deviceId}", written by "operator device add".`,
    "# Copy it with the creds and sealing key (.xk) files to the device (e.g. /etc/drover/agent.toml) and fix the",
    '# paths if they differ there. Add a [podman] socket = "…" section if the podman',
    "# socket is not /run/podman/podman.sock, and a [policy] section to restrict what runs.",
    "",
    stringify(config),
    "",
  ].join("\n");
}
