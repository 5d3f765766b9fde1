/** How a view names what its servers offer, and routes a name back to its server. */
export interface ViewNames {
  join(server: string, name: string): string;
  /** The server and its own name, or undefined when `name` routes to no server. */
  split(name: string): { server: string; name: string } | undefined;
  /** One line for the client (the server's `instructions`) on how names are formed. */
  readonly instructions: string;
}

/**
 * Names on the aggregated endpoint: `<server><separator><name>` for tools and prompts, and the
 * same form for resource URIs and URI templates. Server names are DNS labels and the separator is
 * made only of '_' and '.' (config/schema.ts), which no server name contains: the first separator
 * in a name always ends the server part, so two servers' names never collide and every name,
 * URI or template routes back to exactly one server.
 */
export class BrokerNames implements ViewNames {
  constructor(readonly separator: string) {}

  get instructions(): string {
    return `Tools, prompts and resources of several MCP servers, named <server>${this.separator}<name>.`;
  }

  join(server: string, name: string): string {
    return `${server}${this.separator}${name}`;
  }

  split(name: string): { server: string; name: string } | undefined {
    const at = name.indexOf(this.separator);
    if (at <= 0) return undefined;
    return { server: name.slice(0, at), name: name.slice(at + this.separator.length) };
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
}
