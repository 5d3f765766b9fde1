/**
 * The parts of Envoy's ext_authz and ext_proc messages we read or write, as @grpc/proto-loader
 * presents them (see protos.ts): snake_case fields, bytes as Buffer, enums by name, oneofs named.
 * Hand-written rather than generated: a few dozen fields out of hundreds.
 */

import type { EncodedStruct } from "./encoded-struct.js";

// google.protobuf.Struct / Value (protobufjs built-ins: camelCase fields).
export interface StructValue {
  nullValue?: "NULL_VALUE" | 0;
  numberValue?: number;
  stringValue?: string;
  boolValue?: boolean;
  structValue?: Struct;
  listValue?: { values?: StructValue[] };
  kind?: string;
}
export interface Struct {
  fields?: Record<string, StructValue>;
}

// envoy.config.core.v3
export interface HeaderValue {
  key: string;
  value?: string;
  raw_value?: Buffer | Uint8Array;
}
export type AppendAction =
  "APPEND_IF_EXISTS_OR_ADD" | "ADD_IF_ABSENT" | "OVERWRITE_IF_EXISTS_OR_ADD" | "OVERWRITE_IF_EXISTS";
export interface HeaderValueOption {
  header: HeaderValue;
  append?: { value: boolean };
  append_action?: AppendAction;
  keep_empty_value?: boolean;
}
export interface HeaderMap {
  headers?: HeaderValue[];
}
export interface Metadata {
  filter_metadata?: Record<string, Struct>;
}

// envoy.type.v3.HttpStatus: the code is an enum (decoded as its name, e.g. "Unauthorized").
export interface HttpStatus {
  code: string | number;
}

// envoy.service.auth.v3
export interface CheckRequest {
  attributes?: {
    request?: {
      http?: {
        id?: string;
        method?: string;
        headers?: Record<string, string>;
        header_map?: HeaderMap;
        path?: string;
        host?: string;
        scheme?: string;
        protocol?: string;
        query?: string;
      };
    };
    metadata_context?: Metadata;
    context_extensions?: Record<string, string>;
    /** The listener side of the downstream connection (Envoy: the connection's local address). */
    destination?: { address?: { socket_address?: { address?: string; port_value?: number } } };
  };
}
export interface RpcStatus {
  code: number;
  message?: string;
}
export interface CheckResponse {
  status: RpcStatus;
  denied_response?: { status?: HttpStatus; headers?: HeaderValueOption[]; body?: string };
  ok_response?: {
    headers?: HeaderValueOption[];
    headers_to_remove?: string[];
    response_headers_to_add?: HeaderValueOption[];
  };
  dynamic_metadata?: Struct;
  http_response?: "denied_response" | "ok_response";
}

// envoy.extensions.filters.http.ext_proc.v3.ProcessingMode
export type HeaderSendMode = "DEFAULT" | "SEND" | "SKIP";
export type BodySendMode = "NONE" | "STREAMED" | "BUFFERED" | "BUFFERED_PARTIAL";
export interface ProcessingMode {
  request_header_mode?: HeaderSendMode;
  response_header_mode?: HeaderSendMode;
  request_body_mode?: BodySendMode;
  response_body_mode?: BodySendMode;
  request_trailer_mode?: HeaderSendMode;
  response_trailer_mode?: HeaderSendMode;
}

// envoy.service.ext_proc.v3
export interface HttpHeaders {
  headers?: HeaderMap;
  end_of_stream?: boolean;
}
export interface HttpBody {
  body?: Buffer | Uint8Array;
  end_of_stream?: boolean;
}
export interface HttpTrailers {
  trailers?: HeaderMap;
}
export type ProcessingRequestKind =
  | "request_headers"
  | "response_headers"
  | "request_body"
  | "response_body"
  | "request_trailers"
  | "response_trailers";
export interface ProcessingRequest {
  request_headers?: HttpHeaders;
  response_headers?: HttpHeaders;
  request_body?: HttpBody;
  response_body?: HttpBody;
  request_trailers?: HttpTrailers;
  response_trailers?: HttpTrailers;
  request?: ProcessingRequestKind;
  /** On the server side, present only on request_headers messages (protos.ts). */
  metadata_context?: Metadata;
  observability_mode?: boolean;
}
export interface HeaderMutation {
  set_headers?: HeaderValueOption[];
  remove_headers?: string[];
}
export interface BodyMutation {
  body?: Buffer | Uint8Array;
  clear_body?: boolean;
  mutation?: "body" | "clear_body";
}
export interface CommonResponse {
  status?: "CONTINUE" | "CONTINUE_AND_REPLACE";
  header_mutation?: HeaderMutation;
  body_mutation?: BodyMutation;
  clear_route_cache?: boolean;
}
export interface ImmediateResponse {
  status: HttpStatus;
  headers?: HeaderMutation;
  body?: Buffer | Uint8Array;
  details?: string;
}
export type ProcessingResponseKind =
  | "request_headers"
  | "response_headers"
  | "request_body"
  | "response_body"
  | "request_trailers"
  | "response_trailers"
  | "immediate_response";
export interface ProcessingResponse {
  request_headers?: { response?: CommonResponse };
  response_headers?: { response?: CommonResponse };
  request_body?: { response?: CommonResponse };
  response_body?: { response?: CommonResponse };
  request_trailers?: { header_mutation?: HeaderMutation };
  response_trailers?: { header_mutation?: HeaderMutation };
  immediate_response?: ImmediateResponse;
  response?: ProcessingResponseKind;
  dynamic_metadata?: Struct;
  mode_override?: ProcessingMode;
  override_message_timeout?: { seconds?: number; nanos?: number };
}

/**
 * A reply as the ext-service hands it to its own serializer (protos.ts): dynamic metadata may
 * come already encoded (wire.ts). What goes over the wire is the same message.
 */
export type Outgoing<T extends { dynamic_metadata?: Struct }> = Omit<T, "dynamic_metadata"> & {
  dynamic_metadata?: Struct | EncodedStruct;
};
export type CheckReply = Outgoing<CheckResponse>;
export type ProcessingReply = Outgoing<ProcessingResponse>;

// grpc.health.v1
export type ServingStatus = "UNKNOWN" | "SERVING" | "NOT_SERVING" | "SERVICE_UNKNOWN";
