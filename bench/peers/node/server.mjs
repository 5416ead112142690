// The Node.js team's version of authz's Check: @grpc/grpc-js + jose + node-casbin, nothing of authz's own.
//
// Usage: node server.mjs --port P --policy DIR --jwks-url URL --issuer ISS --audience AUD [--roles-claim CLAIM]
//
// Serves authz.api.v1.AuthorizationService/Check from proto/authz/api/v1/authz.proto (loaded with
// @grpc/proto-loader). The token is verified with jose (RS256 only; signature, exp, iss and aud
// checked; keys from the JWKS URL through createRemoteJWKSet, which caches them). The token's grants
// (its permissions and roles) act as the subject's roles: allowed when node-casbin allows the
// subject or any one of its grants (see bench/peers/README.md). Stops on SIGTERM.
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

import grpc from '@grpc/grpc-js';
import protoLoader from '@grpc/proto-loader';
import { newEnforcer } from 'casbin';
import { createRemoteJWKSet, jwtVerify, errors } from 'jose';

const PROTO_ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'proto');

const { values: args } = parseArgs({
  options: {
    port: { type: 'string' },
    policy: { type: 'string' },
    'jwks-url': { type: 'string' },
    issuer: { type: 'string' },
    audience: { type: 'string' },
    'roles-claim': { type: 'string', default: '' },
  },
});

const definition = protoLoader.loadSync('authz/api/v1/authz.proto', {
  includeDirs: [PROTO_ROOT],
  keepCase: true,
  enums: String,
  defaults: true,
});
const api = grpc.loadPackageDefinition(definition).authz.api.v1;

const enforcer = await newEnforcer(join(args.policy, 'model.conf'), join(args.policy, 'policy.csv'));
const jwks = createRemoteJWKSet(new URL(args['jwks-url']));

function strings(value) {
  return Array.isArray(value) ? value.filter((v) => typeof v === 'string') : [];
}

async function check(request) {
  const token = request.token.replace(/^Bearer /, '');
  let payload;
  try {
    ({ payload } = await jwtVerify(token, jwks, {
      algorithms: ['RS256'],
      issuer: args.issuer,
      audience: args.audience,
      requiredClaims: ['exp', 'sub'],
    }));
  } catch (error) {
    const reason = error instanceof errors.JWTExpired ? 'REASON_TOKEN_EXPIRED' : 'REASON_TOKEN_SIGNATURE_INVALID';
    return { allowed: false, reason };
  }
  const subject = String(payload.sub);
  const names = [subject, ...strings(payload.permissions), ...strings(payload[args['roles-claim']])];
  // enforceSync: node-casbin's async enforce answers the same about 4x slower on the bench's
  // policies, and the work is CPU-bound either way.
  const allowed = names.some((name) => enforcer.enforceSync(name, request.resource, request.action));
  return { allowed, reason: allowed ? 'REASON_ALLOWED' : 'REASON_NO_MATCHING_RULE', subject };
}

const server = new grpc.Server();
server.addService(api.AuthorizationService.service, {
  Check(call, callback) {
    check(call.request).then(
      (response) => callback(null, response),
      (error) => callback({ code: grpc.status.INTERNAL, details: String(error) }),
    );
  },
});
server.bindAsync(`127.0.0.1:${args.port}`, grpc.ServerCredentials.createInsecure(), (error) => {
  if (error) {
    console.error(error);
    process.exit(1);
  }
});
process.on('SIGTERM', () => server.tryShutdown(() => process.exit(0)));
