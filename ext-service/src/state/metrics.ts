import { Counter, Gauge } from "prom-client";
import type { Metrics } from "../telemetry/metrics.js";

/** Metrics of the state store and the features on it, registered beside the gateway's own. */
export interface StateMetrics {
  storeUp: Gauge<"store">;
  storeErrors: Counter<"feature">;
  budgetCharged: Counter<"budget">;
  budgetWarnings: Counter<"budget">;
  budgetExhausted: Counter<"budget">;
  budgetUnchecked: Counter<"budget">;
}

const byRegistry = new WeakMap<Metrics, StateMetrics>();

/** The state metrics of `metrics`' registry, created on first use (a registry takes a name once). */
export function stateMetrics(metrics: Metrics): StateMetrics {
  let found = byRegistry.get(metrics);
  if (found) return found;
  const registers = [metrics.registry];
  found = {
    storeUp: new Gauge({
      name: "mcp_gateway_state_store_up",
      help: "1 while the state store (memory or redis) can be reached, else 0",
      labelNames: ["store"],
      registers,
    }),
    storeErrors: new Counter({
      name: "mcp_gateway_state_store_errors_total",
      help: "Store operations that failed because the store was unavailable, by the feature that asked",
      labelNames: ["feature"],
      registers,
    }),
    budgetCharged: new Counter({
      name: "mcp_gateway_budget_charged_total",
      help: "Units (calls or cost) charged to each budget",
      labelNames: ["budget"],
      registers,
    }),
    budgetWarnings: new Counter({
      name: "mcp_gateway_budget_warnings_total",
      help: "Charges that carried a budget to or past its warning threshold",
      labelNames: ["budget"],
      registers,
    }),
    budgetExhausted: new Counter({
      name: "mcp_gateway_budget_exhausted_total",
      help: "Requests refused because a budget was spent (budget_exhausted)",
      labelNames: ["budget"],
      registers,
    }),
    budgetUnchecked: new Counter({
      name: "mcp_gateway_budget_unchecked_total",
      help: "Calls a budget counts that went through unchecked while the store was down (whenStoreDown: allow)",
      labelNames: ["budget"],
      registers,
    }),
  };
  byRegistry.set(metrics, found);
  return found;
}
