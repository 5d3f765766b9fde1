import { approvalsCommand } from "./approvals.js";
import type { Command } from "./command.js";
import { devCommand } from "./dev.js";
import { edgeCommand } from "./edge.js";
import { explainCommand } from "./explain.js";
import { registryCommand } from "./registry.js";
import { serveCommand } from "./serve.js";
import { tokenCommand } from "./token.js";
import { validateCommand } from "./validate.js";

export const commands: Command[] = [
  serveCommand,
  edgeCommand,
  devCommand,
  validateCommand,
  explainCommand,
  tokenCommand,
  registryCommand,
  approvalsCommand,
];
