import { target as bareProxy } from "./bare-proxy.js";
import { target as broker, uncachedTarget as brokerUncached } from "./broker.js";
import { target as direct } from "./direct.js";
import { target as edge } from "./edge.js";
import { target as extService } from "./ext-service.js";
import type { Target } from "./types.js";

export type { BenchContext, Side, Target } from "./types.js";

/** Every target, in measuring order. Each is skipped (with the reason) when it cannot run. */
export const TARGETS: readonly Target[] = [direct, edge, extService, bareProxy, broker, brokerUncached];
export const TARGET_NAMES = TARGETS.map((t) => t.name);
