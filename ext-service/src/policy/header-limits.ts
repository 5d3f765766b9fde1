/**
 * How large a request's headers may be, on both planes, and why the numbers fit together.
 *
 * The bearer token is what makes headers large. An agent's JWT with many claims can take several
 * KB; the broker's hop identity for a token-exchange server seals that JWT inside (policy/
 * hop-token.ts), which grows it by a third (base64url of the ciphertext) plus the principal. Each
 * listener that takes such a header must accept it, or the request dies in the HTTP parser (Node's
 * default limit is 16 KiB for all headers together) before the gateway can say why.
 */

/**
 * The longest hop identity the broker sends and the per-server route opens. An agent token up to
 * about 24 KB fits (sealed: 4/3 of it, plus the principal). The broker refuses a longer hop before
 * sending it (`agent_token_too_large`); the per-server route reads one as `hop_token_invalid`.
 */
export const MAX_HOP_TOKEN_LENGTH = 32 * 1024;

/**
 * Envoy's `max_request_headers_kb` on the gateway's listeners (envoy.yaml states it; 60 is also
 * Envoy's default): request headers beyond it get Envoy's 431 before any filter runs on HTTP/1;
 * on HTTP/2 Envoy's codec resets the stream instead (EnvoyModel.http2HeadersOverflow).
 */
export const ENVOY_MAX_REQUEST_HEADERS_KB = 60;

/**
 * `maxHeaderSize` of the gateway's own HTTP listeners: the local edge (which takes both agents and
 * the broker's hops), and the broker listener behind Envoy. It must take
 *  - a hop: MAX_HOP_TOKEN_LENGTH plus the hop's own headers (session id, protocol headers,
 *    traceparent: a few KB), so a hop the broker sends is never cut by the parser; and
 *  - behind Envoy, whatever Envoy accepted (ENVOY_MAX_REQUEST_HEADERS_KB) plus the headers Envoy
 *    adds on the way (x-forwarded-*, x-request-id, x-envoy-*), so the broker never resets a
 *    request the front door let through.
 * 64 KiB does both with room to spare; Node counts the request target, names and values.
 */
export const MAX_REQUEST_HEADER_BYTES = 64 * 1024;
