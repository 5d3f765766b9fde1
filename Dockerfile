# syntax=docker/dockerfile:1
# mcp-gateway image: the ext-service (`mcp-gateway serve`) and, in compose, the demo MCP servers.
# Two stages: the build stage packs the npm package (`npm pack`, whose `files` in package.json
# is the one list of what ships: dist/, proto/, the demo config and registry, the JSON Schemas,
# the admin console's static files);
# the runtime stage unpacks that tarball and installs its production dependencies from the
# lockfile. test/deploy/package.test.ts installs the same tarball the same way and starts it.
# Node 24 is the current LTS line; bump the pinned patch with the rest of the stack.
ARG NODE_IMAGE=node:24.21.0-trixie-slim

FROM ${NODE_IMAGE} AS build
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json README.md ./
COPY ext-service ./ext-service
COPY examples ./examples
COPY registry ./registry
COPY schemas ./schemas
COPY proto ./proto
COPY console ./console
# prepack builds dist/; the tarball gets a fixed name for the next stage.
RUN npm pack --silent --pack-destination /tmp && mv /tmp/mcp-gateway-*.tgz /tmp/mcp-gateway.tgz

FROM ${NODE_IMAGE} AS runtime
ENV NODE_ENV=production
WORKDIR /app
COPY package-lock.json ./
COPY --from=build /tmp/mcp-gateway.tgz /tmp/mcp-gateway.tgz
RUN tar -xzf /tmp/mcp-gateway.tgz --strip-components=1 --no-same-owner \
  && rm /tmp/mcp-gateway.tgz \
  && npm ci --omit=dev --no-audit --no-fund \
  && npm cache clean --force
# Dev signing keys live here in compose (a named volume); the image's node user owns it so the
# volume is created writable for that user.
RUN mkdir -p /var/lib/mcp-gateway/dev && chown node:node /var/lib/mcp-gateway/dev
# The node image's unprivileged user (uid 1000). Nothing in the image is writable by it but the
# directory above.
USER node
EXPOSE 9001 9901
HEALTHCHECK --interval=10s --timeout=3s --start-period=15s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:9901/readyz').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
ENTRYPOINT ["node", "--enable-source-maps", "dist/ext-service/src/cli.js"]
CMD ["serve", "--config", "/etc/mcp-gateway/gateway.yaml"]
