import { mkdirSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { z } from "zod";
import { GatewayConfigSchema, RegistrySchema } from "./schema.js";

/** JSON Schema for editors (yaml-language-server), generated from the zod schemas. */
export function jsonSchemas(): Record<string, string> {
  const render = (schema: z.ZodType, title: string) =>
    JSON.stringify({ title, ...z.toJSONSchema(schema, { io: "input", unrepresentable: "any" }) }, null, 2) +
    "\n";
  return {
    "gateway.schema.json": render(GatewayConfigSchema, "mcp-gateway gateway.yaml"),
    "registry.schema.json": render(RegistrySchema, "mcp-gateway registry.yaml"),
  };
}

export const SCHEMA_DIR = join(dirname(fileURLToPath(import.meta.url)), "../../../schemas");

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  mkdirSync(SCHEMA_DIR, { recursive: true });
  for (const [name, text] of Object.entries(jsonSchemas())) {
    writeFileSync(join(SCHEMA_DIR, name), text);
    process.stdout.write(`wrote schemas/${name}\n`);
  }
}
