/**
 * The policy this isolate runs: the bundle `npm run policy:build` compiled from `policies/`, validated and
 * pre-parsed once. A bundle that does not validate or parse throws here, so the worker never serves with it.
 */
import * as cedar from '@cedar-policy/cedar-wasm/web';
// @ts-expect-error: wrangler and the vitest plugin import .wasm as a compiled WebAssembly.Module (default
// export); the package's own .d.ts describes the instance's exports instead.
import cedarWasm from '../../node_modules/@cedar-policy/cedar-wasm/web/cedar_wasm_bg.wasm';
import type { PolicyEngine } from '../core/policy';
import { PolicyBundle } from './bundle';
import compiled from './bundle.generated.json';
import { createPolicyEngine } from './engine';

export interface LoadedPolicy {
  bundle: PolicyBundle;
  engine: PolicyEngine;
}

function load(): LoadedPolicy {
  const parsed = PolicyBundle.safeParse(compiled);
  if (!parsed.success) throw new Error(`policy bundle is invalid; run npm run policy:build: ${parsed.error.message}`);
  cedar.initSync({ module: cedarWasm });
  return { bundle: parsed.data, engine: createPolicyEngine(cedar, parsed.data) };
}

// Loaded when the module is: a bundle that does not validate or parse stops the worker from starting.
const loaded = load();

/** The isolate's policy bundle and pre-parsed Cedar engine. */
export function loadedPolicy(): LoadedPolicy {
  return loaded;
}
