/** How a view names what its servers offer, and routes a name back to its server. */
export interface ViewNames {
  /** A tool or prompt name (or a log's logger) of `server`, as the view gives it. */
  join(server: string, name: string): string;
  /** The server and its own name, or undefined when `name` routes to no server. */
  split(name: string): { server: string; name: string } | undefined;
  /**
   * A resource URI or URI template of `server` as the view gives it: wherever a URI reaches the
   * client (lists, contents read, updates, links and embedded resources in results and prompts).
   */
  joinUri(server: string, uri: string): string;
  /**
   * The server and its own URI, or undefined when `uri` routes to no server. `legacy`: the form of
   * earlier releases routes too (BrokerNames.splitUri).
   */
  splitUri(uri: string, legacy?: boolean): { server: string; name: string } | undefined;
  /** One line for the client (the server's `instructions`) on how names are formed. */
  readonly instructions: string;
}

/** A server name as the registry allows it (config/schema.ts ServerNameSchema): a letter first. */
const SERVER_LABEL = /^[a-z][a-z0-9-]*$/;

/**
 * Names on the aggregated endpoint.
 *
 * Tools and prompts: `<server><separator><name>`. Server names are DNS labels and the separator is
 * made only of '_' and '.' (config/schema.ts), which no server name contains: the first separator
 * in a name always ends the server part, so two servers' names never collide and every name
 * routes back to exactly one server.
 *
 * Resource URIs and URI templates: `<server>.<uri>` whatever the separator (`kb.kb://style-guide`,
 * `kb.kb://articles/{id}`). The server becomes the first label of the URI's scheme, so a server's
 * absolute URI stays an absolute URI (RFC 3986: scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" /
 * "." ), which the MCP schema requires of `uri` and strict clients check): server names start
 * with a letter and hold only letters, digits and '-'. The separator could not do this: '_' is
 * not allowed in a scheme. The first '.' ends the server part, as the separator does in a name. A
 * template's variables are kept as they are: whatever a client expands them to stays after the
 * server part, and routes the same way.
 *
 * Earlier releases gave URIs the names' form (`kb__kb://style-guide`). With `legacy`, that form
 * still routes when the new one does not: a URI whose part before its first '.' is no server
 * name (it holds the separator, or ':' or '/' of the URI) is tried as `<server><separator><uri>`.
 * The two never meet unless the separator starts with '.': then the old form reads as the new
 * one, as the server's URI with the rest of the separator in front, which the server does not
 * know; with the separator "." the forms are one.
 */
export class BrokerNames implements ViewNames {
  constructor(readonly separator: string) {}

  get instructions(): string {
    return (
      `Tools, prompts and resources of several MCP servers: tools and prompts named ` +
      `<server>${this.separator}<name>, resource URIs and URI templates <server>.<uri>.`
    );
  }

  join(server: string, name: string): string {
    return `${server}${this.separator}${name}`;
  }

  split(name: string): { server: string; name: string } | undefined {
    const at = name.indexOf(this.separator);
    if (at <= 0) return undefined;
    return { server: name.slice(0, at), name: name.slice(at + this.separator.length) };
  }

  joinUri(server: string, uri: string): string {
    return `${server}.${uri}`;
  }

  splitUri(uri: string, legacy = false): { server: string; name: string } | undefined {
    const at = uri.indexOf(".");
    const server = at < 0 ? "" : uri.slice(0, at);
    if (SERVER_LABEL.test(server)) return { server, name: uri.slice(at + 1) };
    return legacy ? this.split(uri) : undefined;
  }
}

/**
 * Names in a view of exactly one server with `prefix: false`: the server's own, unchanged, so a
 * client written for `/mcp/<server>` works through the aggregated endpoint as it is. With one
 * server there is nothing to collide with and every name routes to it.
 */
export class SingleServerNames implements ViewNames {
  constructor(readonly server: string) {}

  get instructions(): string {
    return `Tools, prompts and resources of the MCP server ${this.server}, under their own names.`;
  }

  join(_server: string, name: string): string {
    return name;
  }

  split(name: string): { server: string; name: string } {
    return { server: this.server, name };
  }

  joinUri(_server: string, uri: string): string {
    return uri;
  }

  splitUri(uri: string): { server: string; name: string } {
    return { server: this.server, name: uri };
  }
}
