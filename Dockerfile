# syntax=docker/dockerfile:1
# mcp-gateway image: the ext-service (`mcp-gateway serve`) and, in compose, the demo MCP servers.
# Multi-stage: build with dev dependencies, ship production dependencies and dist/ only.
# Node 24 is the current LTS line; bump the pinned patch with the rest of the stack.
ARG NODE_IMAGE=node:24.21.0-trixie-slim

FROM ${NODE_IMAGE} AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY ext-service ./ext-service
COPY examples ./examples
RUN npm run build

FROM ${NODE_IMAGE} AS prod-deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force

FROM ${NODE_IMAGE} AS runtime
ENV NODE_ENV=production
WORKDIR /app
COPY --from=prod-deps /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY package.json ./
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
