// A client of authz built only from proto/authz/api/v1/authz.proto, as any Node backend would build it.
//
// Usage: node client.mjs HOST:PORT < requests.json
// stdin:  [{"rpc": "Check" | "BatchCheck" | "GetVisibility" | "GetPrincipal", "request": {...}}, ...]
//         Struct fields (attributes, context) are given as plain JSON objects.
// stdout: one entry per request, in order: the response object (enums as names, defaults included,
//         int64 as strings), or {"error": {"code": "INVALID_ARGUMENT", "details": "..."}} for an RPC error.
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import grpc from '@grpc/grpc-js';
import protoLoader from '@grpc/proto-loader';

const PROTO_ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'proto');
const PACKAGE = 'authz.api.v1';
const CALL_TIMEOUT_MS = 10_000;

// google/protobuf/{struct,timestamp}.proto resolve to the copies protobufjs bundles, so only the
// project's own proto directory is needed as an include dir.
const definition = protoLoader.loadSync('authz/api/v1/authz.proto', {
  includeDirs: [PROTO_ROOT],
  keepCase: true,
  enums: String,
  defaults: true,
  longs: String,
  oneofs: true,
});

/** google.protobuf.Value from a JSON value. protobufjs bundles struct.proto with camelCase field names. */
function toValue(value) {
  if (value === null) return { nullValue: 'NULL_VALUE' };
  if (Array.isArray(value)) return { listValue: { values: value.map(toValue) } };
  switch (typeof value) {
    case 'number':
      return { numberValue: value };
    case 'string':
      return { stringValue: value };
    case 'boolean':
      return { boolValue: value };
    case 'object':
      return { structValue: toStruct(value) };
    default:
      throw new TypeError(`not a JSON value: ${value}`);
  }
}

function toStruct(object) {
  return { fields: Object.fromEntries(Object.entries(object).map(([k, v]) => [k, toValue(v)])) };
}

function messageType(typeName) {
  return (definition[`${PACKAGE}.${typeName}`] ?? definition[typeName]).type;
}

/** Walk a request by its descriptor, turning plain JSON objects into Structs wherever the proto says Struct. */
function encode(type, message) {
  const out = { ...message };
  for (const field of type.field) {
    if (field.type !== 'TYPE_MESSAGE' || out[field.name] == null) continue;
    const convert =
      field.typeName === 'google.protobuf.Struct'
        ? toStruct
        : (value) => encode(messageType(field.typeName), value);
    const value = out[field.name];
    out[field.name] = field.label === 'LABEL_REPEATED' ? value.map(convert) : convert(value);
  }
  return out;
}

function statusName(code) {
  return Object.keys(grpc.status).find((name) => grpc.status[name] === code) ?? String(code);
}

function call(client, rpc, request) {
  const method = definition[`${PACKAGE}.AuthorizationService`][rpc];
  if (!method) throw new Error(`unknown rpc ${rpc}`);
  const message = encode(method.requestType.type, request);
  return new Promise((resolve) => {
    client[rpc](message, { deadline: Date.now() + CALL_TIMEOUT_MS }, (error, response) => {
      resolve(error ? { error: { code: statusName(error.code), details: error.details } } : response);
    });
  });
}

async function main() {
  const address = process.argv[2];
  if (!address) throw new Error('usage: node client.mjs HOST:PORT < requests.json');
  const requests = JSON.parse(readFileSync(0, 'utf8'));

  const { AuthorizationService } = grpc.loadPackageDefinition(definition).authz.api.v1;
  const client = new AuthorizationService(address, grpc.credentials.createInsecure());
  await new Promise((resolve, reject) =>
    client.waitForReady(Date.now() + CALL_TIMEOUT_MS, (error) => (error ? reject(error) : resolve())),
  );

  const responses = [];
  // One at a time, in order: the output lines up with the input.
  for (const { rpc, request } of requests) responses.push(await call(client, rpc, request));
  client.close();
  process.stdout.write(JSON.stringify(responses, null, 2) + '\n');
}

main().catch((error) => {
  process.stderr.write(`${error.stack ?? error}\n`);
  process.exit(1);
});
