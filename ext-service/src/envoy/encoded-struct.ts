/**
 * A google.protobuf.Struct already in wire form: the message's bytes without a length prefix.
 * Replies carry one where their metadata is rebuilt on every exchange (the ext_authz identity,
 * the ext_proc access-log namespace): built from strings and cached parts, it skips the Struct
 * object and the size pass over it. The server-side serializer (protos.ts) copies it as it is.
 *
 * On its own so that types.ts (which names it in reply types) and wire.ts (which builds it)
 * do not import each other.
 */
export class EncodedStruct {
  constructor(readonly bytes: Buffer) {}
}

/**
 * A whole reply already in wire form (see wire.ts encodeCheckAllow): the server-side serializer
 * (protos.ts) sends its bytes as they are.
 */
export class EncodedMessage {
  constructor(readonly bytes: Buffer) {}
}
