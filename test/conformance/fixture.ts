/**
 * What the conformance suite's server scenarios ask of a server, shared by the 2025-11-25 server (SDK 1.x) and the
 * 2026-07-28 server (SDK v2), so both eras serve the same content and the registry fixture pins one set of
 * definitions per era.
 */

/** A 1x1 PNG (8-bit RGB), made for these tests. */
export const PNG_BASE64 =
  "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR42mNQSFgAAAHEASFcollRAAAAAElFTkSuQmCC";

/** Four 16-bit mono samples at 8 kHz in a RIFF/WAVE container, made for these tests. */
export const WAV_BASE64 = "UklGRiwAAABXQVZFZm10IBAAAAABAAEAQB8AAIA+AAACABAAZGF0YQgAAAAAAOgDAAAY/A==";

export const TEXT = {
  simpleTool: "This is a simple text response for testing.",
  errorTool: "This tool intentionally returns an error for testing",
  staticResource: "This is the content of the static text resource.",
  embeddedResource: "This is an embedded resource content.",
  promptEmbedded: "Embedded resource content for testing.",
  simplePrompt: "This is a simple prompt for testing.",
} as const;

/** The three info-level messages the logging scenario counts, in order. */
export const LOG_MESSAGES = [
  "Tool execution started",
  "Tool processing data",
  "Tool execution completed",
] as const;

/** Progress steps the progress scenario expects (strictly increasing, out of 100). */
export const PROGRESS_STEPS = [0, 50, 100] as const;

/** The pause between logged or progress steps, so notifications arrive while the call is still open. */
export const STEP_DELAY_MS = 50;

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

export function templateData(id: string): string {
  return JSON.stringify({ id, templateTest: true, data: `Data for ID: ${id}` });
}

export function promptWithArgumentsText(arg1: string, arg2: string): string {
  return `Prompt with arguments: arg1='${arg1}', arg2='${arg2}'`;
}

/** Candidates offered by completion/complete for prompt and template arguments, filtered by prefix. */
export const COMPLETION_CANDIDATES = ["paris", "park", "party", "test", "testing", "tested"] as const;

export function complete(prefix: string): string[] {
  return COMPLETION_CANDIDATES.filter((value) => value.startsWith(prefix));
}

/** The elicitation schema with a default for every primitive type (SEP-1034). */
export const DEFAULTS_SCHEMA = {
  type: "object",
  properties: {
    name: { type: "string", description: "User name", default: "John Doe" },
    age: { type: "integer", description: "User age", default: 30 },
    score: { type: "number", description: "User score", default: 95.5 },
    status: {
      type: "string",
      description: "User status",
      enum: ["active", "inactive", "pending"],
      default: "active",
    },
    verified: { type: "boolean", description: "Verification status", default: true },
  },
  required: [],
} as const;

/** The elicitation schema with the five enum shapes (SEP-1330). */
export const ENUMS_SCHEMA = {
  type: "object",
  properties: {
    untitledSingle: { type: "string", description: "Pick one", enum: ["option1", "option2", "option3"] },
    titledSingle: {
      type: "string",
      description: "Pick one (titled)",
      oneOf: [
        { const: "value1", title: "First Option" },
        { const: "value2", title: "Second Option" },
        { const: "value3", title: "Third Option" },
      ],
    },
    legacyEnum: {
      type: "string",
      description: "Pick one (legacy titles)",
      enum: ["opt1", "opt2", "opt3"],
      enumNames: ["Option One", "Option Two", "Option Three"],
    },
    untitledMulti: {
      type: "array",
      description: "Pick several",
      minItems: 1,
      maxItems: 3,
      items: { type: "string", enum: ["option1", "option2", "option3"] },
    },
    titledMulti: {
      type: "array",
      description: "Pick several (titled)",
      minItems: 1,
      maxItems: 3,
      items: {
        anyOf: [
          { const: "value1", title: "First Choice" },
          { const: "value2", title: "Second Choice" },
          { const: "value3", title: "Third Choice" },
        ],
      },
    },
  },
  required: [],
} as const;

export function elicitationSummary(result: { action: string; content?: unknown }): string {
  return `Elicitation completed: action=${result.action}, content=${JSON.stringify(result.content ?? {})}`;
}
