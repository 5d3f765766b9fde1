import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { z } from "zod";
import { serveMcp, type RunningServer } from "./http.js";

/**
 * Demo release tooling: a deploy that reports progress while it "runs", a status query, and a
 * shell-like tool marked critical in the registry. Nothing here executes anything: run_command
 * only echoes the command back.
 */

const Environment = z.enum(["staging", "production"]);
const DEPLOY_STEPS = ["build image", "push image", "roll out", "health check"];

export interface DeployOptions {
  /** Pause between progress steps (ms). */
  stepMs?: number;
  /** Another description of deploy_service: a new release of the tool, to show re-pinning. */
  deployDescription?: string | undefined;
}

export function createDeployServer(
  versions: Map<string, Record<string, string>>,
  options: DeployOptions = {},
): McpServer {
  const stepMs = options.stepMs ?? 150;
  const server = new McpServer({ name: "demo-deploy", version: "1.0.0" });

  server.registerTool(
    "deploy_service",
    {
      title: "Deploy service",
      description:
        options.deployDescription ??
        "Deploy a service version to an environment. Reports progress while the rollout runs.",
      inputSchema: {
        service: z.string().min(1).describe("Service name"),
        version: z.string().min(1).describe("Version to deploy"),
        environment: Environment.describe("Target environment"),
      },
      annotations: { readOnlyHint: false, destructiveHint: true, idempotentHint: true, openWorldHint: true },
    },
    async ({ service, version, environment }, extra) => {
      const token = extra._meta?.progressToken;
      for (let i = 0; i < DEPLOY_STEPS.length; i++) {
        await new Promise((resolve) => setTimeout(resolve, stepMs));
        if (token !== undefined) {
          await extra.sendNotification({
            method: "notifications/progress",
            params: {
              progressToken: token,
              progress: i + 1,
              total: DEPLOY_STEPS.length,
              message: DEPLOY_STEPS[i],
            },
          });
        }
      }
      const current = versions.get(service) ?? {};
      versions.set(service, { ...current, [environment]: version });
      return { content: [{ type: "text", text: `Deployed ${service}@${version} to ${environment}` }] };
    },
  );

  server.registerTool(
    "deploy_status",
    {
      title: "Deployment status",
      description: "Show the version of a service currently running in each environment.",
      inputSchema: { service: z.string().min(1).describe("Service name") },
      outputSchema: { service: z.string(), environments: z.record(z.string(), z.string()) },
      annotations: { readOnlyHint: true, openWorldHint: false },
    },
    async ({ service }) => {
      const environments = versions.get(service) ?? {};
      return {
        content: [{ type: "text", text: JSON.stringify({ service, environments }) }],
        structuredContent: { service, environments },
      };
    },
  );

  server.registerTool(
    "run_command",
    {
      title: "Run command",
      description: "Run a shell command on the deploy host. (Demo: only echoes the command back.)",
      inputSchema: { command: z.string().min(1).describe("The command line") },
      annotations: { readOnlyHint: false, destructiveHint: true, idempotentHint: false, openWorldHint: true },
    },
    async ({ command }) => ({ content: [{ type: "text", text: `demo host would run: ${command}` }] }),
  );

  return server;
}

export function startDeployServer(
  port: number,
  host?: string,
  options?: DeployOptions,
): Promise<RunningServer> {
  const versions = new Map<string, Record<string, string>>([
    ["billing", { staging: "2.4.0", production: "2.3.1" }],
    ["search", { staging: "1.9.0", production: "1.9.0" }],
  ]);
  return serveMcp(() => createDeployServer(versions, options), port, host);
}
