/**
 * The benchmark's crypto floor: a token endpoint doing only the cryptography no broker can skip. It verifies
 * the attestation and signs one access token. No replay check, no state, no policy, no audit: what is left
 * of Tessera's time once these are taken away is what its guarantees cost.
 */
import { type FloorEnv, issueToken, verifyExchange } from './exchange';

export default {
  async fetch(request: Request, env: FloorEnv): Promise<Response> {
    const exchange = await verifyExchange(request, env);
    return exchange instanceof Response ? exchange : issueToken(exchange, env);
  },
};
