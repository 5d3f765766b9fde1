/**
 * Names on the aggregated endpoint: `<server><separator><name>` for tools and prompts, and the
 * same form for resource URIs and URI templates. Server names are DNS labels and the separator is
 * made only of '_' and '.' (config/schema.ts), which no server name contains: the first separator
 * in a name always ends the server part, so two servers' names never collide and every name,
 * URI or template routes back to exactly one server.
 */
export class BrokerNames {
  constructor(readonly separator: string) {}

  join(server: string, name: string): string {
    return `${server}${this.separator}${name}`;
  }

  /** The server and its own name, or undefined when `name` has no server part. */
  split(name: string): { server: string; name: string } | undefined {
    const at = name.indexOf(this.separator);
    if (at <= 0) return undefined;
    return { server: name.slice(0, at), name: name.slice(at + this.separator.length) };
  }
}
