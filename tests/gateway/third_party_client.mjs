// A third-party FHIR client against `satchel provider serve`
// (tests/tests/gateway_third_party.rs, issue 17): npm fhir-kit-client does
// the FHIR REST, npm jose signs the SMART Backend Services client assertion.
// Both are installed by scripts/setup-gateway-client.sh into
// <repo>/.cache/gateway-client; nothing here is Satchel code.
//
//   node third_party_client.mjs keygen --client-id ID --out DIR
//     writes DIR/jwks.json (the public JWKS to register) and
//     DIR/private.jwk.json (ES384, P-384)
//   node third_party_client.mjs run --base URL --client-id ID --key FILE
//     discovers the token endpoint, gets a token, then: metadata, a
//     transaction for two patients, Patient and Observation searches,
//     Patient/$summary; prints one JSON object on stdout.
//
// Errors go to stderr with a non-zero exit.

import { readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL, fileURLToPath } from 'node:url';
import { randomUUID } from 'node:crypto';

const NHS = 'https://fhir.nhs.uk/Id/nhs-number';
const LOINC_GLUCOSE = '2339-0';

// The npm packages live outside this directory (in .cache/gateway-client),
// so bare imports cannot find them: resolve each package's ESM entry point
// from its package.json.
const modulesDir =
  process.env.SATCHEL_GATEWAY_CLIENT_MODULES ||
  fileURLToPath(new URL('../../.cache/gateway-client/node_modules/', import.meta.url));

function entryPoint(target) {
  if (typeof target === 'string') return target;
  if (target && typeof target === 'object') {
    for (const condition of ['import', 'node', 'default']) {
      if (condition in target) {
        const found = entryPoint(target[condition]);
        if (found) return found;
      }
    }
  }
  return undefined;
}

async function load(name) {
  const dir = join(modulesDir, name);
  let pkg;
  try {
    pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8'));
  } catch {
    throw new Error(`${name} is not installed in ${modulesDir}: run bash scripts/setup-gateway-client.sh`);
  }
  const exp = pkg.exports && (typeof pkg.exports === 'string' ? pkg.exports : pkg.exports['.']);
  const entry = entryPoint(exp) || pkg.module || pkg.main || 'index.js';
  return import(pathToFileURL(join(dir, entry)).href);
}

function args(argv) {
  const out = {};
  for (let i = 0; i < argv.length; i += 2) {
    if (!argv[i].startsWith('--') || argv[i + 1] === undefined) {
      throw new Error(`bad argument ${argv[i]}`);
    }
    out[argv[i].slice(2)] = argv[i + 1];
  }
  return out;
}

function need(opts, name) {
  if (!opts[name]) throw new Error(`--${name} is required`);
  return opts[name];
}

async function keygen(opts) {
  const jose = await load('jose');
  const clientId = need(opts, 'client-id');
  const out = need(opts, 'out');
  const { publicKey, privateKey } = await jose.generateKeyPair('ES384', { extractable: true });
  const kid = `${clientId}-jose-key-1`;
  const pub = { ...(await jose.exportJWK(publicKey)), kid, alg: 'ES384', use: 'sig' };
  const priv = { ...(await jose.exportJWK(privateKey)), kid, alg: 'ES384', use: 'sig' };
  mkdirSync(out, { recursive: true });
  writeFileSync(join(out, 'jwks.json'), JSON.stringify({ keys: [pub] }, null, 2));
  writeFileSync(join(out, 'private.jwk.json'), JSON.stringify(priv, null, 2), { mode: 0o600 });
  process.stdout.write(`${JSON.stringify({ kid })}\n`);
}

function patient(family, given, birthDate, nhs) {
  return {
    resourceType: 'Patient',
    identifier: [{ system: NHS, value: nhs }],
    name: [{ family, given: [given] }],
    birthDate,
  };
}

function glucose(subjectFullUrl, effectiveDateTime, value) {
  return {
    resourceType: 'Observation',
    status: 'final',
    category: [
      {
        coding: [
          {
            system: 'http://terminology.hl7.org/CodeSystem/observation-category',
            code: 'laboratory',
            display: 'Laboratory',
          },
        ],
      },
    ],
    code: {
      coding: [{ system: 'http://loinc.org', code: LOINC_GLUCOSE, display: 'Glucose [Mass/volume] in Blood' }],
      text: 'Glucose',
    },
    subject: { reference: subjectFullUrl },
    effectiveDateTime,
    valueQuantity: { value, unit: 'mmol/L', system: 'http://unitsofmeasure.org', code: 'mmol/L' },
  };
}

function entry(fullUrl, resource) {
  return { fullUrl, resource, request: { method: 'POST', url: resource.resourceType } };
}

async function getToken(jose, tokenEndpoint, clientId, keyFile, scope) {
  const jwk = JSON.parse(readFileSync(keyFile, 'utf8'));
  const key = await jose.importJWK(jwk, 'ES384');
  const now = Math.floor(Date.now() / 1000);
  const assertion = await new jose.SignJWT({})
    .setProtectedHeader({ alg: 'ES384', kid: jwk.kid, typ: 'JWT' })
    .setIssuer(clientId)
    .setSubject(clientId)
    .setAudience(tokenEndpoint)
    .setJti(randomUUID())
    .setIssuedAt(now)
    .setExpirationTime(now + 300)
    .sign(key);
  const form = new URLSearchParams({
    grant_type: 'client_credentials',
    scope,
    client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer',
    client_assertion: assertion,
  });
  const resp = await fetch(tokenEndpoint, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' },
    body: form,
  });
  const text = await resp.text();
  if (!resp.ok) throw new Error(`token endpoint answered ${resp.status}: ${text}`);
  const body = JSON.parse(text);
  if (!body.access_token || String(body.token_type).toLowerCase() !== 'bearer') {
    throw new Error(`token endpoint answered without a bearer token: ${text}`);
  }
  return body.access_token;
}

async function run(opts) {
  const [jose, { Client }] = await Promise.all([load('jose'), load('fhir-kit-client')]);
  const baseUrl = need(opts, 'base');
  const clientId = need(opts, 'client-id');
  const keyFile = need(opts, 'key');
  const scope = opts.scope || 'system/*.read system/*.write';

  // Discovery, unauthenticated: fhir-kit-client races
  // .well-known/smart-configuration, the CapabilityStatement's oauth-uris
  // extension and .well-known/openid-configuration.
  const discovery = new Client({ baseUrl });
  const auth = await discovery.smartAuthMetadata();
  if (!auth.tokenUrl) throw new Error(`no token endpoint discovered: ${JSON.stringify(auth)}`);
  const tokenEndpoint = auth.tokenUrl.toString();

  const accessToken = await getToken(jose, tokenEndpoint, clientId, keyFile, scope);
  const client = new Client({ baseUrl, customHeaders: { Authorization: `Bearer ${accessToken}` } });

  const cap = await client.capabilityStatement();
  if (cap.resourceType !== 'CapabilityStatement') {
    throw new Error(`metadata is a ${cap.resourceType}`);
  }

  const p1 = `urn:uuid:${randomUUID()}`;
  const p2 = `urn:uuid:${randomUUID()}`;
  const bundle = {
    resourceType: 'Bundle',
    type: 'transaction',
    entry: [
      entry(p1, patient('Example', 'Pat', '1970-01-01', '9000000009')),
      entry(`urn:uuid:${randomUUID()}`, glucose(p1, '2026-03-04T09:30:00Z', 5.4)),
      entry(p2, patient('Jones', 'Pat', '1955-02-03', '9000000017')),
      entry(`urn:uuid:${randomUUID()}`, glucose(p2, '2026-03-05T10:15:00Z', 6.1)),
    ],
  };
  const answer = await client.transaction({ body: bundle });
  if (answer.resourceType !== 'Bundle' || answer.type !== 'transaction-response') {
    throw new Error(`transaction answered ${answer.resourceType} ${answer.type}: ${JSON.stringify(answer)}`);
  }
  const transactionStatuses = (answer.entry || []).map((e) => e.response && e.response.status);

  const found = await client.search({
    resourceType: 'Patient',
    searchParams: { identifier: `${NHS}|9000000009` },
  });
  const patients = (found.entry || []).map((e) => e.resource).filter((r) => r && r.resourceType === 'Patient');
  if (patients.length !== 1) {
    throw new Error(`Patient search found ${patients.length}: ${JSON.stringify(found)}`);
  }
  const patientId = patients[0].id;

  const observations = await client.search({
    resourceType: 'Observation',
    searchParams: { patient: `Patient/${patientId}`, code: `http://loinc.org|${LOINC_GLUCOSE}` },
  });
  if (observations.resourceType !== 'Bundle' || observations.type !== 'searchset') {
    throw new Error(`Observation search answered ${JSON.stringify(observations)}`);
  }
  const obs = (observations.entry || []).map((e) => e.resource).filter((r) => r && r.resourceType === 'Observation');

  const summary = await client.operation({
    name: '$summary',
    resourceType: 'Patient',
    id: patientId,
    method: 'GET',
  });
  const summaryHasAllergy = (summary.entry || []).some(
    (e) => e.resource && e.resource.resourceType === 'AllergyIntolerance' && JSON.stringify(e.resource).includes('Penicillin'),
  );

  const result = {
    fhirVersion: cap.fhirVersion,
    tokenEndpoint,
    transactionStatuses,
    patientId,
    observationTotal: observations.total,
    observationValues: obs.map((o) => o.valueQuantity && o.valueQuantity.value),
    summaryType: summary.type,
    summaryHasAllergy,
  };
  process.stdout.write(`${JSON.stringify(result)}\n`);
}

async function main() {
  const [mode, ...rest] = process.argv.slice(2);
  const opts = args(rest);
  if (mode === 'keygen') return keygen(opts);
  if (mode === 'run') return run(opts);
  throw new Error('usage: third_party_client.mjs keygen --client-id ID --out DIR | run --base URL --client-id ID --key FILE');
}

main().catch((e) => {
  const detail = e && e.response ? ` (status ${e.response.status}: ${JSON.stringify(e.response.data)})` : '';
  process.stderr.write(`third_party_client: ${e && e.stack ? e.stack : e}${detail}\n`);
  process.exit(1);
});
