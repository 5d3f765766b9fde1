export { startEdge, type Edge, type EdgeOptions } from "./server.js";
