import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { durationMs } from "../model/duration.js";
import type { Registry, TokenExchangeConfig } from "./settings.js";

/**
 * Headers the gateway adds to every request it sends one registry server (`upstream.headers`):
 * the server's own credentials, held by the gateway so that neither the agent nor the server's
 * deployment carries them. Values come only from `${env:NAME}` and `${file:/path}` references,
 * read when the config is loaded (again on every reload), never from the committed files.
 */
export interface UpstreamCredentials {
  /** By server name: lower-case header name to resolved value. */
  readonly headers: ReadonlyMap<string, Readonly<Record<string, string>>>;
  /** By server name: how to exchange an agent's token for one for that server (RFC 8693). */
  readonly exchanges: ReadonlyMap<string, TokenExchangeSettings>;
  /** Every secret part of every resolved value, for DLP's exact-match detector. */
  readonly secrets: readonly string[];
}

/** A server's `upstream.tokenExchange`, its client secret resolved. */
export interface TokenExchangeSettings {
  readonly tokenEndpoint: string;
  readonly clientId: string;
  readonly clientSecret: string;
  readonly audience: string | undefined;
  readonly resource: string | undefined;
  readonly scope: string | undefined;
  readonly subjectTokenType: string;
  /** Lower-case header name the issued token goes in. */
  readonly header: string;
  readonly refreshSkewMs: number;
  readonly timeoutMs: number;
}

export interface UpstreamCredentialProblem {
  path: (string | number)[];
  message: string;
}

const REFERENCE = /\$\{(env|file):([^}]*)\}/g;

/** Header names whose values are credentials: a literal value there would be a committed secret. */
const CREDENTIAL_NAME =
  /(?:^|-)(?:authorization|auth|token|secret|key|apikey|api-key|password|cookie|credential)s?(?:$|-)/;

export function credentialLooking(name: string): boolean {
  return CREDENTIAL_NAME.test(name.toLowerCase());
}

/**
 * Why a configured header value is refused as an inline secret, or undefined. A
 * credential-looking header must take its secret from a reference; only an auth scheme
 * (one word of letters and a space: `Bearer `, `token `) may be written before it.
 */
export function inlineSecretProblem(name: string, value: string): string | undefined {
  if (!credentialLooking(name)) return undefined;
  const literal = value.replace(REFERENCE, "\uffff");
  // An auth scheme (a word of letters, as in RFC 9110's auth-scheme) may precede the reference.
  if (/^(?:[A-Za-z]{1,20} )?\uffff+$/.test(literal)) return undefined;
  return (
    `'${name}' looks like a credential: its value must come from \${env:NAME} or \${file:/path} ` +
    `(for example 'Bearer \${env:API_TOKEN}'), never written in the registry`
  );
}

/**
 * Resolves every server's `upstream.headers`. An unset variable, an unreadable or empty file or
 * a value with a line break is a problem: the gateway refuses the config (a reload keeps the
 * running one) rather than send a server a request without its credential.
 */
export function readUpstreamCredentials(
  registry: Registry,
  baseDir: string,
  env: NodeJS.ProcessEnv = process.env,
): { credentials: UpstreamCredentials; problems: UpstreamCredentialProblem[] } {
  const headers = new Map<string, Record<string, string>>();
  const exchanges = new Map<string, TokenExchangeSettings>();
  const secrets = new Set<string>();
  const problems: UpstreamCredentialProblem[] = [];
  registry.servers.forEach((server, i) => {
    const exchange = server.upstream?.tokenExchange;
    if (exchange) {
      const settings = tokenExchangeSettings(exchange, baseDir, env);
      if ("error" in settings) {
        problems.push({
          path: ["servers", i, "upstream", "tokenExchange", "clientSecret"],
          message: settings.error,
        });
      } else {
        exchanges.set(server.name, settings);
        secrets.add(settings.clientSecret);
      }
    }
    const configured = server.upstream?.headers;
    if (!configured) return;
    const resolved: Record<string, string> = {};
    for (const [name, template] of Object.entries(configured)) {
      const path = ["servers", i, "upstream", "headers", name];
      const parts: string[] = [];
      let failed = false;
      const value = template.replace(REFERENCE, (_all, kind: string, ref: string) => {
        const read = kind === "env" ? fromEnv(ref, env) : fromFile(ref, baseDir);
        if (typeof read !== "string") {
          problems.push({ path, message: read.error });
          failed = true;
          return "";
        }
        parts.push(read);
        return read;
      });
      if (failed) continue;
      if (/[\r\n\0]/.test(value)) {
        problems.push({ path, message: `the value of '${name}' holds a line break or NUL` });
        continue;
      }
      resolved[name.toLowerCase()] = value;
      for (const part of parts) secrets.add(part);
    }
    headers.set(server.name, resolved);
  });
  return { credentials: { headers, exchanges, secrets: [...secrets] }, problems };
}

function tokenExchangeSettings(
  config: TokenExchangeConfig,
  baseDir: string,
  env: NodeJS.ProcessEnv,
): TokenExchangeSettings | { error: string } {
  // The schema admits exactly one reference here, so the whole value is the secret.
  const reference = /^\$\{(env|file):([^}]*)\}$/.exec(config.clientSecret);
  if (!reference) return { error: "clientSecret must be one ${env:NAME} or ${file:/path} reference" };
  const secret = reference[1] === "env" ? fromEnv(reference[2]!, env) : fromFile(reference[2]!, baseDir);
  if (typeof secret !== "string") return secret;
  if (/[\r\n\0]/.test(secret)) return { error: "the client secret holds a line break or NUL" };
  return {
    tokenEndpoint: config.tokenEndpoint,
    clientId: config.clientId,
    clientSecret: secret,
    audience: config.audience,
    resource: config.resource,
    scope: config.scope,
    subjectTokenType: config.subjectTokenType,
    header: config.header.toLowerCase(),
    refreshSkewMs: config.refreshSkewSeconds * 1000,
    timeoutMs: durationMs(config.timeout),
  };
}

function fromEnv(name: string, env: NodeJS.ProcessEnv): string | { error: string } {
  const value = env[name]?.trim();
  return value ? value : { error: `environment variable ${name} is not set (or empty)` };
}

function fromFile(file: string, baseDir: string): string | { error: string } {
  try {
    const value = readFileSync(resolve(baseDir, file), "utf8").trim();
    return value ? value : { error: `credential file ${file} is empty` };
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    return {
      error: code === "ENOENT" ? `credential file not found: ${file}` : `cannot read ${file} (${code})`,
    };
  }
}
