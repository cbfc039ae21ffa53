// Satchel SMART Health Link viewer (HL7 SMART Health Cards and Links, STU1).
//
// Reads a `#shlink:/<base64url>` payload from the page's fragment, asks the
// recipient's name (and a passcode for `P` links), fetches the manifest (or
// the single file of a `U` link), decrypts each JWE with WebCrypto and
// renders the FHIR content for a clinician.
//
// Rules this file keeps:
// - health data and server answers are untrusted: everything is inserted
//   with createElement/textContent, never innerHTML;
// - nothing clinical is logged to the console;
// - no request is made for a damaged or expired link;
// - no inline styles (the page runs under a strict CSP): classes and SVG
//   presentation attributes only.
'use strict';

(function () {
  const CONTRIBUTED_BY_URL = 'https://satchel.health/fhir/StructureDefinition/contributed-by';
  const RECIPIENT_STORAGE_KEY = 'satchel.viewer.recipient';
  const EMBEDDED_LENGTH_MAX = 1000000;
  const MAX_INFLATED_BYTES = 64 * 1024 * 1024;
  const FETCH_TIMEOUT_MS = 15000;
  const SVG_NS = 'http://www.w3.org/2000/svg';

  const MSG = {
    damaged: 'This link is damaged: it could not be read. Ask the patient to share it again.',
    revoked: 'This link no longer works: the patient revoked it, it expired, or it never existed.',
    tooMany: 'Too many requests, try again in a minute.',
    network: 'Could not reach the server that holds this summary. Check your connection and try again.',
    undecryptable: 'The summary could not be decrypted: the link is damaged or was changed.',
    badAnswer: 'The server sent an answer this viewer could not read. Try again later.',
    server: 'The server that holds this summary had a problem. Try again later.',
    noCrypto: 'This browser cannot decrypt the summary here (WebCrypto is unavailable: the page must be opened over https).',
    noInflate: 'This browser is too old to open this summary (it cannot decompress it). Try an up-to-date browser.',
    nothingToShow: 'The link holds no health summary this viewer can show.',
  };

  // ---------- small DOM helpers ----------

  function el(tag, className, ...children) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    for (const child of children) append(node, child);
    return node;
  }

  function append(node, ...children) {
    for (const child of children) {
      if (child === null || child === undefined || child === false) continue;
      if (Array.isArray(child)) {
        append(node, ...child);
      } else if (child instanceof Node) {
        node.appendChild(child);
      } else {
        node.appendChild(document.createTextNode(String(child)));
      }
    }
  }

  function svg(tag, attrs) {
    const node = document.createElementNS(SVG_NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
    return node;
  }

  const $ = (id) => document.getElementById(id);

  function setStatus(state, text) {
    const status = $('status');
    status.textContent = text || '';
    if (state) status.setAttribute('data-state', state);
    else status.removeAttribute('data-state');
  }

  class ViewerError extends Error {
    constructor(state, message) {
      super(message);
      this.state = state;
    }
  }

  // ---------- base64url and payload ----------

  function b64urlDecode(text) {
    if (typeof text !== 'string' || !/^[A-Za-z0-9_-]*$/.test(text) || text.length % 4 === 1) {
      throw new Error('not base64url');
    }
    let b64 = text.replace(/-/g, '+').replace(/_/g, '/');
    while (b64.length % 4) b64 += '=';
    const bin = atob(b64);
    const out = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
    return out;
  }

  function utf8(bytes) {
    return new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  }

  function asciiBytes(text) {
    const out = new Uint8Array(text.length);
    for (let i = 0; i < text.length; i++) out[i] = text.charCodeAt(i) & 0x7f;
    return out;
  }

  function manifestUrlAllowed(url) {
    if (url.protocol === 'https:') return true;
    if (url.protocol !== 'http:') return false;
    // Plain http only for a page that is itself on http (development and
    // tests) or for loopback addresses.
    return location.protocol === 'http:' ||
      url.hostname === 'localhost' || url.hostname === '127.0.0.1' || url.hostname === '[::1]';
  }

  // Returns the parsed payload, or throws (the caller shows "damaged").
  function parsePayload(hash) {
    const marker = 'shlink:/';
    const at = hash.indexOf(marker);
    if (at < 0) throw new Error('no shlink');
    let encoded = hash.slice(at + marker.length).trim();
    try { encoded = decodeURIComponent(encoded); } catch (_) { /* keep as is */ }
    const json = JSON.parse(utf8(b64urlDecode(encoded)));
    if (!json || typeof json !== 'object' || Array.isArray(json)) throw new Error('not an object');
    if (typeof json.url !== 'string' || typeof json.key !== 'string') throw new Error('url/key missing');
    if (json.key.length !== 43) throw new Error('key length');
    const key = b64urlDecode(json.key);
    if (key.length !== 32) throw new Error('key bytes');
    const url = new URL(json.url);
    if (!manifestUrlAllowed(url)) throw new Error('url scheme');
    if (json.exp !== undefined && (typeof json.exp !== 'number' || !isFinite(json.exp))) throw new Error('exp');
    const flag = json.flag === undefined ? '' : json.flag;
    if (typeof flag !== 'string' || !/^[A-Z]*$/.test(flag)) throw new Error('flag');
    const label = typeof json.label === 'string' ? json.label.slice(0, 80) : '';
    return {
      url: url.href,
      key,
      exp: json.exp,
      live: flag.includes('L'),
      passcode: flag.includes('P'),
      // The spec does not allow U with P; such a link goes through the
      // manifest, which can check the passcode.
      direct: flag.includes('U') && !flag.includes('P'),
      label,
    };
  }

  // ---------- network ----------

  async function fetchWithTimeout(url, init) {
    const ctrl = new AbortController();
    const timer = setTimeout(() => ctrl.abort(), FETCH_TIMEOUT_MS);
    try {
      return await fetch(url, Object.assign({
        credentials: 'omit',
        cache: 'no-store',
        referrerPolicy: 'no-referrer',
        redirect: 'follow',
        signal: ctrl.signal,
      }, init));
    } catch (_) {
      throw new ViewerError('error', MSG.network);
    } finally {
      clearTimeout(timer);
    }
  }

  async function readText(response) {
    try {
      return await response.text();
    } catch (_) {
      throw new ViewerError('error', MSG.network);
    }
  }

  // Maps a non-2xx answer to a message; never shows the server's body.
  async function failFor(response, isManifest) {
    const s = response.status;
    if (s === 401 && isManifest) {
      let remaining = null;
      try {
        const body = JSON.parse(await response.text());
        if (body && Number.isInteger(body.remainingAttempts) && body.remainingAttempts >= 0) {
          remaining = body.remainingAttempts;
        }
      } catch (_) { /* no count */ }
      if (remaining === 0) {
        throw new ViewerError('locked',
          'No passcode attempts left: this link is now locked. Ask the patient for a new one.');
      }
      if (remaining === null) throw new ViewerError('wrong-passcode', 'Wrong passcode.');
      throw new ViewerError('wrong-passcode',
        'Wrong passcode. ' + remaining + (remaining === 1 ? ' attempt' : ' attempts') + ' left.');
    }
    if (s === 404 || s === 410) throw new ViewerError('revoked', MSG.revoked);
    if (s === 429) throw new ViewerError('error', MSG.tooMany);
    if (s >= 500) throw new ViewerError('error', MSG.server);
    if (!isManifest && (s === 401 || s === 403)) {
      throw new ViewerError('error', 'The file link expired. Press "View summary" again.');
    }
    throw new ViewerError('error', 'The server refused the request (HTTP ' + s + ').');
  }

  // "application/fhir+json", with or without parameters (";fhirVersion=4.0.1").
  function isFhirJson(contentType) {
    return contentType.split(';')[0].trim().toLowerCase() === 'application/fhir+json';
  }

  // Returns a list of {contentType, jwe} (jwe null when not fetched).
  async function fetchFiles(payload, recipient, passcode) {
    if (payload.direct) {
      // %20 rather than URLSearchParams' '+': every query decoder reads it.
      const u = new URL(payload.url);
      const sep = u.search && u.search !== '?' ? '&' : (u.search === '?' ? '' : '?');
      const target = u.origin + u.pathname + u.search + sep + 'recipient=' + encodeURIComponent(recipient);
      const res = await fetchWithTimeout(target, { method: 'GET', headers: { Accept: 'application/jose' } });
      if (!res.ok) await failFor(res, true);
      return [{ contentType: 'application/fhir+json', jwe: (await readText(res)).trim() }];
    }
    const body = { recipient };
    if (payload.passcode) body.passcode = passcode;
    body.embeddedLengthMax = EMBEDDED_LENGTH_MAX;
    const res = await fetchWithTimeout(payload.url, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', Accept: 'application/json' },
      body: JSON.stringify(body),
    });
    if (!res.ok) await failFor(res, true);
    let manifest;
    try {
      manifest = JSON.parse(await readText(res));
    } catch (e) {
      if (e instanceof ViewerError) throw e;
      throw new ViewerError('error', MSG.badAnswer);
    }
    if (!manifest || !Array.isArray(manifest.files)) throw new ViewerError('error', MSG.badAnswer);
    const files = [];
    if (manifest.status === 'no-longer-valid') files.noLongerValid = true;
    for (const f of manifest.files) {
      if (!f || typeof f.contentType !== 'string') continue;
      if (!isFhirJson(f.contentType)) {
        files.push({ contentType: f.contentType, jwe: null });
        continue;
      }
      if (typeof f.embedded === 'string') {
        files.push({ contentType: f.contentType, jwe: f.embedded.trim() });
      } else if (typeof f.location === 'string') {
        let loc;
        try { loc = new URL(f.location, payload.url); } catch (_) { throw new ViewerError('error', MSG.badAnswer); }
        if (!manifestUrlAllowed(loc)) throw new ViewerError('error', MSG.badAnswer);
        const r = await fetchWithTimeout(loc.href, { method: 'GET', headers: { Accept: 'application/jose' } });
        if (!r.ok) await failFor(r, false);
        files.push({ contentType: f.contentType, jwe: (await readText(r)).trim() });
      }
    }
    return files;
  }

  // ---------- JWE (compact, alg dir, enc A256GCM, optional zip DEF) ----------

  async function inflateRaw(bytes) {
    if (typeof DecompressionStream !== 'function') throw new ViewerError('error', MSG.noInflate);
    let stream;
    try {
      stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream('deflate-raw'));
    } catch (_) {
      throw new ViewerError('error', MSG.noInflate);
    }
    const reader = stream.getReader();
    const chunks = [];
    let total = 0;
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      total += value.length;
      if (total > MAX_INFLATED_BYTES) {
        reader.cancel().catch(() => {});
        throw new Error('inflated too large');
      }
      chunks.push(value);
    }
    const out = new Uint8Array(total);
    let off = 0;
    for (const c of chunks) { out.set(c, off); off += c.length; }
    return out;
  }

  async function decryptJwe(compact, keyBytes) {
    const fail = () => new ViewerError('damaged', MSG.undecryptable);
    if (!globalThis.crypto || !crypto.subtle) throw new ViewerError('error', MSG.noCrypto);
    const parts = typeof compact === 'string' ? compact.split('.') : [];
    if (parts.length !== 5) throw fail();
    const [protectedB64, encryptedKey, ivB64, ctB64, tagB64] = parts;
    let header, iv, ct, tag;
    try {
      header = JSON.parse(utf8(b64urlDecode(protectedB64)));
      iv = b64urlDecode(ivB64);
      ct = b64urlDecode(ctB64);
      tag = b64urlDecode(tagB64);
    } catch (_) {
      throw fail();
    }
    if (!header || header.alg !== 'dir' || header.enc !== 'A256GCM') throw fail();
    if (encryptedKey !== '' || iv.length !== 12 || tag.length !== 16) throw fail();
    if (header.zip !== undefined && header.zip !== 'DEF') throw fail();
    const data = new Uint8Array(ct.length + tag.length);
    data.set(ct, 0);
    data.set(tag, ct.length);
    let plain;
    try {
      const key = await crypto.subtle.importKey('raw', keyBytes, { name: 'AES-GCM' }, false, ['decrypt']);
      plain = new Uint8Array(await crypto.subtle.decrypt(
        { name: 'AES-GCM', iv, additionalData: asciiBytes(protectedB64), tagLength: 128 }, key, data));
    } catch (_) {
      throw fail();
    }
    try {
      if (header.zip === 'DEF') plain = await inflateRaw(plain);
      return utf8(plain);
    } catch (e) {
      if (e instanceof ViewerError) throw e;
      throw fail();
    }
  }

  // ---------- FHIR helpers ----------

  function arr(x) {
    if (x === undefined || x === null) return [];
    return Array.isArray(x) ? x : [x];
  }

  function str(x) {
    return typeof x === 'string' ? x : (typeof x === 'number' || typeof x === 'boolean') ? String(x) : '';
  }

  function conceptText(cc) {
    if (!cc || typeof cc !== 'object') return '';
    if (str(cc.text)) return cc.text;
    for (const c of arr(cc.coding)) if (c && str(c.display)) return c.display;
    for (const c of arr(cc.coding)) if (c && str(c.code)) return c.code;
    return '';
  }

  function codingCode(cc, system) {
    for (const c of arr(cc && cc.coding)) {
      if (c && (!system || c.system === system) && str(c.code)) return c.code;
    }
    return '';
  }

  function conceptKey(cc) {
    const c = arr(cc && cc.coding).find((x) => x && str(x.code));
    if (c) return (c.system || '') + '|' + c.code;
    return 'text|' + conceptText(cc).toLowerCase();
  }

  function categoryCodes(resource) {
    const out = [];
    for (const cat of arr(resource.category)) {
      for (const c of arr(cat && cat.coding)) if (c && str(c.code)) out.push(c.code);
    }
    return out;
  }

  function humanName(names) {
    const n = arr(names).find((x) => x && typeof x === 'object');
    if (!n) return '';
    const given = arr(n.given).filter((g) => str(g)).join(' ');
    const parts = [given, str(n.family)].filter(Boolean).join(' ');
    return parts || str(n.text);
  }

  function quantityText(q) {
    if (!q || typeof q !== 'object') return '';
    if (q.value === undefined || q.value === null) return '';
    const unit = str(q.unit) || str(q.code);
    const cmp = str(q.comparator);
    return cmp + str(q.value) + (unit ? ' ' + unit : '');
  }

  function valueText(r) {
    if (!r || typeof r !== 'object') return '';
    if (r.valueQuantity) return quantityText(r.valueQuantity);
    if (r.valueCodeableConcept) return conceptText(r.valueCodeableConcept);
    if (typeof r.valueString === 'string') return r.valueString;
    if (typeof r.valueBoolean === 'boolean') return r.valueBoolean ? 'yes' : 'no';
    if (typeof r.valueInteger === 'number') return String(r.valueInteger);
    if (r.valueRange) {
      const lo = quantityText(r.valueRange.low), hi = quantityText(r.valueRange.high);
      return [lo, hi].filter(Boolean).join(' – ');
    }
    if (r.valueRatio) {
      const n = quantityText(r.valueRatio.numerator), d = quantityText(r.valueRatio.denominator);
      return n && d ? n + ' / ' + d : n;
    }
    if (typeof r.valueDateTime === 'string') return formatFhirDate(r.valueDateTime);
    if (typeof r.valuePeriod === 'object' && r.valuePeriod) return formatFhirDate(r.valuePeriod.start);
    if (r.dataAbsentReason) return '(' + (conceptText(r.dataAbsentReason) || 'no value') + ')';
    return '';
  }

  const BP_CODES = new Set(['85354-9', '55284-4', '35094-2']);
  const SYSTOLIC = '8480-6';
  const DIASTOLIC = '8462-4';

  function observationValueText(obs) {
    const own = valueText(obs);
    const comps = arr(obs.component).filter((c) => c && typeof c === 'object');
    if (!comps.length) return own;
    if (BP_CODES.has(codingCode(obs.code))) {
      const sys = comps.find((c) => codingCode(c.code) === SYSTOLIC);
      const dia = comps.find((c) => codingCode(c.code) === DIASTOLIC);
      if (sys && dia && sys.valueQuantity && dia.valueQuantity) {
        const unit = str(sys.valueQuantity.unit) || str(sys.valueQuantity.code);
        return str(sys.valueQuantity.value) + '/' + str(dia.valueQuantity.value) + (unit ? ' ' + unit : '');
      }
    }
    const parts = comps.map((c) => {
      const v = valueText(c);
      const name = conceptText(c.code);
      return v ? (name ? name + ': ' + v : v) : '';
    }).filter(Boolean);
    return [own].concat(parts).filter(Boolean).join('; ');
  }

  // Clinical date of a resource: the first that exists, as a FHIR string.
  function clinicalDate(r) {
    const cands = [
      r.effectiveDateTime, r.effectivePeriod && r.effectivePeriod.start, r.effectiveInstant,
      r.onsetDateTime, r.onsetPeriod && r.onsetPeriod.start, r.recordedDate,
      r.occurrenceDateTime, r.performedDateTime, r.performedPeriod && r.performedPeriod.start,
      r.authoredOn, r.dateAsserted, r.issued, r.meta && r.meta.lastUpdated,
    ];
    for (const c of cands) if (str(c)) return c;
    return '';
  }

  function contributor(r) {
    for (const ext of arr(r.extension)) {
      if (ext && ext.url === CONTRIBUTED_BY_URL && str(ext.valueString)) return ext.valueString;
    }
    if (r.meta && str(r.meta.source)) return r.meta.source;
    return '';
  }

  const dateFmt = new Intl.DateTimeFormat(undefined, { year: 'numeric', month: 'short', day: 'numeric' });
  const dateTimeFmt = new Intl.DateTimeFormat(undefined, {
    year: 'numeric', month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit',
  });
  const monthFmt = new Intl.DateTimeFormat(undefined, { year: 'numeric', month: 'short' });

  // FHIR date/dateTime/instant → local text. Partial dates keep their
  // precision; date-only values are not shifted by the time zone.
  function formatFhirDate(value) {
    const v = str(value);
    if (!v) return '';
    let m = /^(\d{4})$/.exec(v);
    if (m) return m[1];
    m = /^(\d{4})-(\d{2})$/.exec(v);
    if (m) return monthFmt.format(new Date(Date.UTC(+m[1], +m[2] - 1, 1, 12)));
    m = /^(\d{4})-(\d{2})-(\d{2})$/.exec(v);
    if (m) return dateFmt.format(new Date(+m[1], +m[2] - 1, +m[3], 12));
    const d = new Date(v);
    if (isNaN(d.getTime())) return v;
    return dateTimeFmt.format(d);
  }

  function fhirDateMillis(value) {
    const v = str(value);
    if (!v) return NaN;
    const m = /^(\d{4})(?:-(\d{2}))?(?:-(\d{2}))?$/.exec(v);
    if (m) return new Date(+m[1], m[2] ? +m[2] - 1 : 0, m[3] ? +m[3] : 1, 12).getTime();
    return new Date(v).getTime();
  }

  // ---------- bundle model ----------

  class Model {
    constructor() {
      this.entries = []; // resources in bundle order
      this.byRef = new Map();
      this.compositions = [];
      this.patients = [];
      this.timestamps = [];
    }

    addFhir(json) {
      if (!json || typeof json !== 'object') return;
      if (json.resourceType === 'Bundle') {
        if (str(json.timestamp)) this.timestamps.push(json.timestamp);
        for (const e of arr(json.entry)) {
          if (!e || !e.resource || typeof e.resource !== 'object' || !str(e.resource.resourceType)) continue;
          this.add(e.resource, str(e.fullUrl));
        }
      } else if (str(json.resourceType)) {
        this.add(json, '');
      }
    }

    add(r, fullUrl) {
      this.entries.push(r);
      if (fullUrl) this.byRef.set(fullUrl, r);
      if (str(r.id)) {
        this.byRef.set(r.resourceType + '/' + r.id, r);
        if (!this.byRef.has(r.id)) this.byRef.set(r.id, r);
      }
      if (r.resourceType === 'Composition') this.compositions.push(r);
      if (r.resourceType === 'Patient') this.patients.push(r);
    }

    resolve(ref, from) {
      if (!ref || !str(ref.reference)) return null;
      const s = ref.reference;
      if (s.startsWith('#')) {
        // A contained resource of the referencing one.
        const id = s.slice(1);
        return arr(from && from.contained).find((c) => c && c.id === id) || null;
      }
      if (this.byRef.has(s)) return this.byRef.get(s);
      // An absolute URL whose tail is Type/id.
      const m = /([A-Za-z]+\/[^/]+)$/.exec(s);
      if (m && this.byRef.has(m[1])) return this.byRef.get(m[1]);
      return null;
    }
  }

  // ---------- sections ----------

  const KNOWN = [
    { key: 'allergies', title: 'Allergies and intolerances', loinc: ['48765-2'], always: true },
    { key: 'medications', title: 'Current medications', loinc: ['10160-0'], always: true },
    { key: 'problems', title: 'Problems', loinc: ['11450-4'], always: true },
    { key: 'immunizations', title: 'Immunizations', loinc: ['11369-6'] },
    { key: 'results', title: 'Recent results', loinc: ['30954-2'] },
    { key: 'vitals', title: 'Vital signs', loinc: ['8716-3'] },
    { key: 'procedures', title: 'Procedures', loinc: ['47519-4'] },
  ];
  const KNOWN_BY_LOINC = new Map();
  for (const k of KNOWN) for (const c of k.loinc) KNOWN_BY_LOINC.set(c, k.key);

  // Resources shown elsewhere or only as context of others.
  const NOT_LISTED = new Set([
    'Composition', 'Patient', 'Organization', 'Practitioner', 'PractitionerRole', 'Location',
    'Endpoint', 'Medication', 'Substance', 'Provenance', 'Bundle',
  ]);

  function isErroneous(r) {
    if (r.status === 'entered-in-error') return true;
    return codingCode(r.verificationStatus) === 'entered-in-error';
  }

  // Section key for a resource not placed by a Composition.
  function classify(r) {
    switch (r.resourceType) {
      case 'AllergyIntolerance': return 'allergies';
      case 'MedicationStatement':
      case 'MedicationRequest':
      case 'MedicationAdministration':
      case 'MedicationDispense': return 'medications';
      case 'Condition': return 'problems';
      case 'Immunization': return 'immunizations';
      case 'Procedure': return 'procedures';
      case 'DiagnosticReport': return 'results';
      case 'Observation': {
        const cats = categoryCodes(r);
        if (cats.includes('vital-signs')) return 'vitals';
        if (cats.includes('laboratory')) return 'results';
        return null;
      }
      default: return null;
    }
  }

  function otherGroupTitle(r) {
    const cat = arr(r.category).map(conceptText).find(Boolean);
    const type = r.resourceType.replace(/([a-z])([A-Z])/g, '$1 $2');
    return cat ? type + ' (' + cat + ')' : type;
  }

  // Builds the ordered list of sections: [{id, title, resources, emptyReason, note}]
  function buildSections(model) {
    const known = new Map(KNOWN.map((k) => [k.key, { id: k.key, title: k.title, resources: [], emptyReason: null, present: false, always: !!k.always }]));
    const others = new Map(); // title → section, in order of first appearance
    const placed = new Set();

    const addOther = (title, r) => {
      if (!others.has(title)) {
        others.set(title, { id: 'other-' + (others.size + 1), title, resources: [], emptyReason: null, present: true });
      }
      if (r) others.get(title).resources.push(r);
      return others.get(title);
    };

    for (const comp of model.compositions) {
      for (const s of arr(comp.section)) {
        if (!s || typeof s !== 'object') continue;
        const key = KNOWN_BY_LOINC.get(codingCode(s.code, 'http://loinc.org') || codingCode(s.code));
        const title = str(s.title) || conceptText(s.code) || 'Section';
        const target = key ? known.get(key) : addOther(title, null);
        target.present = true;
        const entries = arr(s.entry).map((ref) => model.resolve(ref)).filter(Boolean);
        for (const r of entries) {
          // The same resource may sit under two headings (IPS examples put
          // one Consent under two); show it under each, once.
          if (target.resources.includes(r) || isErroneous(r)) continue;
          placed.add(r);
          // A Composition may put a resource under an unexpected heading;
          // keep its heading, the clinician sees the Composition's layout.
          target.resources.push(r);
        }
        if (!entries.length && s.emptyReason) target.emptyReason = conceptText(s.emptyReason) || 'No information';
        if (!entries.length && !s.emptyReason && s.text && str(s.text.div)) target.narrative = narrativeText(s.text.div);
      }
    }

    // Resources shown inside another (a report's results, a device of a
    // device-use statement) are not listed again on their own.
    const shownInside = new Set();
    for (const r of model.entries) {
      const refs = arr(r.result).concat(arr(r.device), arr(r.medicationReference));
      for (const ref of refs) {
        const target = model.resolve(ref);
        if (target && target !== r) shownInside.add(target);
      }
    }

    for (const r of model.entries) {
      if (placed.has(r) || NOT_LISTED.has(r.resourceType) || isErroneous(r) || shownInside.has(r)) continue;
      placed.add(r);
      const key = classify(r);
      if (key) {
        known.get(key).resources.push(r);
        known.get(key).present = true;
      } else {
        addOther(otherGroupTitle(r), r);
      }
    }

    const out = [];
    for (const k of KNOWN) {
      const s = known.get(k.key);
      if (s.present || s.always) out.push(s);
    }
    for (const s of others.values()) out.push(s);
    return out;
  }

  // ---------- item rendering ----------

  function metaLine(r, dateOverride) {
    const spans = [];
    const date = dateOverride !== undefined ? dateOverride : clinicalDate(r);
    if (date) spans.push(el('span', 'date', formatFhirDate(date)));
    const who = contributor(r);
    if (who) spans.push(el('span', 'who', 'Added by ' + who));
    if (!spans.length) return null;
    const meta = el('div', 'item-meta', spans[0]);
    for (const s of spans.slice(1)) append(meta, ' · ', s);
    return meta;
  }

  function tag(text, cls) {
    // The leading space keeps words apart in copied or read-out text.
    return text ? [' ', el('span', 'tag' + (cls ? ' ' + cls : ''), text)] : null;
  }

  function statusTag(cc) {
    const code = codingCode(cc) || conceptText(cc);
    if (!code) return null;
    const inactive = ['inactive', 'resolved', 'remission', 'refuted'].includes(code);
    return tag(conceptText(cc) || code, inactive ? 'inactive' : '');
  }

  function line(label, value) {
    if (!value) return null;
    return el('div', 'item-line', label ? label + ': ' : '', value);
  }

  function renderAllergy(r) {
    const crit = str(r.criticality);
    const li = el('li', 'item' + (crit === 'high' ? ' crit-high' : ''));
    const title = el('div', 'item-title', conceptText(r.code) || 'Allergy or intolerance (not named)');
    if (crit === 'high') append(title, tag('HIGH CRITICALITY', 'crit-high'));
    else if (crit === 'unable-to-assess') append(title, tag('criticality unknown', 'crit-unknown'));
    else if (crit === 'low') append(title, tag('low criticality', ''));
    append(title, statusTag(r.clinicalStatus));
    const verification = codingCode(r.verificationStatus);
    if (verification && verification !== 'confirmed') append(title, tag(conceptText(r.verificationStatus) || verification, ''));
    li.appendChild(title);
    const kind = [str(r.type), arr(r.category).filter(str).join(', ')].filter(Boolean).join(' · ');
    append(li, line('Type', kind));
    for (const reaction of arr(r.reaction)) {
      if (!reaction) continue;
      const manif = arr(reaction.manifestation).map(conceptText).filter(Boolean).join(', ');
      const sev = str(reaction.severity);
      const text = [manif || str(reaction.description), sev ? '(' + sev + ')' : ''].filter(Boolean).join(' ');
      append(li, line('Reaction', text));
    }
    append(li, metaLine(r));
    return li;
  }

  function medicationName(r, model) {
    if (r.medicationCodeableConcept) {
      const t = conceptText(r.medicationCodeableConcept);
      if (t) return t;
    }
    if (r.medicationReference) {
      const med = model.resolve(r.medicationReference, r);
      if (med && med.code) {
        const t = conceptText(med.code);
        if (t) return t;
      }
      if (str(r.medicationReference.display)) return r.medicationReference.display;
    }
    return 'Medication (not named)';
  }

  function dosageText(r) {
    const dosages = arr(r.dosage).concat(arr(r.dosageInstruction));
    const texts = [];
    for (const d of dosages) {
      if (!d || typeof d !== 'object') continue;
      if (str(d.text)) { texts.push(d.text); continue; }
      const bits = [];
      for (const dr of arr(d.doseAndRate)) if (dr && dr.doseQuantity) bits.push(quantityText(dr.doseQuantity));
      if (d.timing && d.timing.code) bits.push(conceptText(d.timing.code));
      if (d.timing && d.timing.repeat) {
        const rep = d.timing.repeat;
        if (rep.frequency && rep.period && rep.periodUnit) bits.push(rep.frequency + ' per ' + rep.period + ' ' + rep.periodUnit);
      }
      if (d.route) bits.push(conceptText(d.route));
      if (bits.filter(Boolean).length) texts.push(bits.filter(Boolean).join(', '));
    }
    if (r.dosage && str(r.dosage.text)) texts.push(r.dosage.text); // MedicationAdministration
    return texts.join('; ');
  }

  function renderMedication(r, model) {
    const li = el('li', 'item');
    const title = el('div', 'item-title', medicationName(r, model));
    const status = str(r.status);
    if (status) append(title, tag(status, ['stopped', 'completed', 'cancelled', 'not-taken', 'entered-in-error'].includes(status) ? 'inactive' : ''));
    li.appendChild(title);
    append(li, line('Dose', dosageText(r)));
    append(li, line('Reason', arr(r.reasonCode).map(conceptText).filter(Boolean).join(', ')));
    append(li, metaLine(r));
    return li;
  }

  function onsetText(r) {
    if (str(r.onsetDateTime)) return formatFhirDate(r.onsetDateTime);
    if (r.onsetPeriod && str(r.onsetPeriod.start)) return formatFhirDate(r.onsetPeriod.start);
    if (str(r.onsetString)) return r.onsetString;
    if (r.onsetAge) return 'age ' + quantityText(r.onsetAge);
    return '';
  }

  function renderCondition(r) {
    const li = el('li', 'item');
    const title = el('div', 'item-title', conceptText(r.code) || 'Problem (not named)');
    append(title, statusTag(r.clinicalStatus));
    const verification = codingCode(r.verificationStatus);
    if (verification && verification !== 'confirmed') append(title, tag(conceptText(r.verificationStatus) || verification, ''));
    li.appendChild(title);
    append(li, line('Onset', onsetText(r)));
    append(li, line('Severity', conceptText(r.severity)));
    if (str(r.abatementDateTime)) append(li, line('Resolved', formatFhirDate(r.abatementDateTime)));
    // The onset is already shown; the meta date is the recorded date.
    const date = str(r.recordedDate) || (r.meta && str(r.meta.lastUpdated)) || (onsetText(r) ? '' : clinicalDate(r));
    append(li, metaLine(r, date));
    return li;
  }

  function renderImmunization(r) {
    const li = el('li', 'item');
    const title = el('div', 'item-title', conceptText(r.vaccineCode) || 'Vaccine (not named)');
    if (str(r.status) && r.status !== 'completed') append(title, tag(r.status, 'inactive'));
    li.appendChild(title);
    const doses = arr(r.protocolApplied).map((p) => p && (str(p.doseNumberPositiveInt) || str(p.doseNumberString))).filter(Boolean);
    append(li, line('Dose', doses.join(', ')));
    if (!str(r.occurrenceDateTime) && str(r.occurrenceString)) append(li, line('When', r.occurrenceString));
    append(li, metaLine(r));
    return li;
  }

  function referenceRangeText(obs) {
    const rr = arr(obs.referenceRange)[0];
    if (!rr) return '';
    if (str(rr.text)) return rr.text;
    const lo = quantityText(rr.low), hi = quantityText(rr.high);
    return [lo, hi].filter(Boolean).join(' – ');
  }

  function renderObservation(r) {
    const li = el('li', 'item');
    const title = el('div', 'item-title', conceptText(r.code) || 'Observation');
    if (str(r.status) && !['final', 'amended', 'corrected'].includes(r.status)) append(title, tag(r.status, ''));
    li.appendChild(title);
    const v = observationValueText(r);
    if (v) li.appendChild(el('div', 'item-line', el('span', 'value', v)));
    append(li, line('Interpretation', arr(r.interpretation).map(conceptText).filter(Boolean).join(', ')));
    append(li, line('Reference range', referenceRangeText(r)));
    append(li, line('Note', arr(r.note).map((n) => n && str(n.text)).filter(Boolean).join(' ')));
    append(li, metaLine(r));
    return li;
  }

  function renderDiagnosticReport(r, model) {
    const li = el('li', 'item');
    const title = el('div', 'item-title', conceptText(r.code) || 'Report');
    if (str(r.status) && !['final', 'amended', 'corrected'].includes(r.status)) append(title, tag(r.status, ''));
    li.appendChild(title);
    for (const ref of arr(r.result)) {
      const obs = model.resolve(ref);
      if (obs && obs.resourceType === 'Observation') {
        append(li, line(conceptText(obs.code) || 'Result', observationValueText(obs)));
      } else if (ref && str(ref.display)) {
        append(li, line('', ref.display));
      }
    }
    append(li, line('Conclusion', str(r.conclusion) || arr(r.conclusionCode).map(conceptText).filter(Boolean).join(', ')));
    append(li, metaLine(r));
    return li;
  }

  function renderProcedure(r) {
    const li = el('li', 'item');
    const title = el('div', 'item-title', conceptText(r.code) || 'Procedure (not named)');
    if (str(r.status) && r.status !== 'completed') append(title, tag(r.status, ''));
    li.appendChild(title);
    append(li, line('Body site', arr(r.bodySite).map(conceptText).filter(Boolean).join(', ')));
    if (!str(r.performedDateTime) && !(r.performedPeriod && str(r.performedPeriod.start)) && str(r.performedString)) {
      append(li, line('When', r.performedString));
    }
    append(li, metaLine(r));
    return li;
  }

  // Narrative XHTML: its text only, never inserted as markup (a parsed
  // DOMParser document runs no script and loads nothing).
  function narrativeText(div) {
    try {
      const doc = new DOMParser().parseFromString(div, 'text/html');
      return (doc.body.textContent || '').trim().replace(/\s+/g, ' ');
    } catch (_) {
      return '';
    }
  }

  function genericTitle(r, model) {
    const fields = ['code', 'vaccineCode', 'type', 'category', 'medicationCodeableConcept'];
    for (const f of fields) {
      const t = arr(r[f]).map(conceptText).find(Boolean);
      if (t) return t;
    }
    if (r.medicationReference) return medicationName(r, model);
    if (r.device) {
      const dev = model.resolve(r.device);
      const name = dev && (arr(dev.deviceName).map((d) => d && str(d.name)).find(Boolean) || conceptText(dev.type));
      if (name) return name;
    }
    if (str(r.title)) return r.title;
    if (str(r.description)) return r.description;
    if (r.text && str(r.text.div)) {
      const t = narrativeText(r.text.div);
      if (t) return t.length > 200 ? t.slice(0, 200) + '…' : t;
    }
    return r.resourceType;
  }

  function renderGeneric(r, model) {
    if (r.resourceType === 'Observation') return renderObservation(r);
    const li = el('li', 'item');
    const title = el('div', 'item-title', genericTitle(r, model));
    const status = str(r.status) || codingCode(r.clinicalStatus);
    if (status) append(title, tag(status, ''));
    li.appendChild(title);
    const v = valueText(r);
    if (v) li.appendChild(el('div', 'item-line', el('span', 'value', v)));
    if (str(r.description) && genericTitle(r, model) !== r.description) append(li, line('', r.description));
    append(li, metaLine(r));
    return li;
  }

  function renderItem(sectionId, r, model) {
    switch (r.resourceType) {
      case 'AllergyIntolerance': return renderAllergy(r);
      case 'MedicationStatement':
      case 'MedicationRequest':
      case 'MedicationAdministration':
      case 'MedicationDispense': return renderMedication(r, model);
      case 'Condition': return renderCondition(r);
      case 'Immunization': return renderImmunization(r);
      case 'Observation': return renderObservation(r);
      case 'DiagnosticReport': return renderDiagnosticReport(r, model);
      case 'Procedure': return renderProcedure(r);
      default: return renderGeneric(r, model);
    }
  }

  // ---------- vital signs with charts ----------

  // Numeric series of an observation: [{name, value, unit}]
  function numericSeries(obs) {
    const out = [];
    const q = obs.valueQuantity;
    if (q && typeof q.value === 'number') out.push({ name: '', value: q.value, unit: str(q.unit) || str(q.code) });
    for (const c of arr(obs.component)) {
      const cq = c && c.valueQuantity;
      if (cq && typeof cq.value === 'number') {
        out.push({ name: conceptText(c.code), key: conceptKey(c.code), value: cq.value, unit: str(cq.unit) || str(cq.code) });
      }
    }
    return out;
  }

  const SERIES_COLOURS = ['#0b4fb3', '#a4001d', '#0d5e2b', '#6b3fa0'];

  function drawChart(points, title) {
    // points: [{t, values: Map(seriesName → value)}] sorted by t.
    const W = 320, H = 110, L = 38, R = 8, T = 8, B = 22;
    const names = [];
    for (const p of points) for (const n of p.values.keys()) if (!names.includes(n)) names.push(n);
    let min = Infinity, max = -Infinity;
    for (const p of points) for (const v of p.values.values()) { min = Math.min(min, v); max = Math.max(max, v); }
    if (min === max) { min -= 1; max += 1; }
    const pad = (max - min) * 0.1;
    min -= pad; max += pad;
    const t0 = points[0].t, t1 = points[points.length - 1].t;
    const x = (i, t) => L + (t1 > t0 ? (t - t0) / (t1 - t0) : i / Math.max(1, points.length - 1)) * (W - L - R);
    const y = (v) => T + (1 - (v - min) / (max - min)) * (H - T - B);
    const root = svg('svg', {
      viewBox: '0 0 ' + W + ' ' + H, class: 'chart', role: 'img', 'aria-label': title,
      preserveAspectRatio: 'xMidYMid meet',
    });
    const titleEl = svg('title');
    titleEl.textContent = title;
    root.appendChild(titleEl);
    root.appendChild(svg('rect', { x: L, y: T, width: W - L - R, height: H - T - B, fill: '#ffffff', stroke: '#c9ccd1' }));
    const fmt = (v) => String(Math.round(v * 10) / 10);
    const labels = [[max - pad, T + 10], [min + pad, H - B - 2]];
    for (const [v, yy] of labels) {
      const t = svg('text', { x: L - 4, y: yy, 'text-anchor': 'end', 'font-size': 10, fill: '#4a4a4a' });
      t.textContent = fmt(v);
      root.appendChild(t);
    }
    const d0 = svg('text', { x: L, y: H - 6, 'font-size': 10, fill: '#4a4a4a' });
    d0.textContent = dateFmt.format(new Date(t0));
    root.appendChild(d0);
    if (t1 !== t0) {
      const d1 = svg('text', { x: W - R, y: H - 6, 'text-anchor': 'end', 'font-size': 10, fill: '#4a4a4a' });
      d1.textContent = dateFmt.format(new Date(t1));
      root.appendChild(d1);
    }
    names.forEach((name, si) => {
      const colour = SERIES_COLOURS[si % SERIES_COLOURS.length];
      const pts = [];
      points.forEach((p, i) => { if (p.values.has(name)) pts.push([x(i, p.t), y(p.values.get(name))]); });
      if (pts.length > 1) {
        root.appendChild(svg('polyline', {
          points: pts.map(([a, b]) => a.toFixed(1) + ',' + b.toFixed(1)).join(' '),
          fill: 'none', stroke: colour, 'stroke-width': 2, 'stroke-linejoin': 'round',
        }));
      }
      for (const [a, b] of pts) root.appendChild(svg('circle', { cx: a.toFixed(1), cy: b.toFixed(1), r: 2.8, fill: colour }));
    });
    return { node: root, names };
  }

  function renderVitalGroup(group) {
    // group: observations sharing a code, sorted oldest → newest.
    const latest = group[group.length - 1];
    const li = el('li', 'item');
    const title = el('div', 'item-title', conceptText(latest.code) || 'Vital sign');
    li.appendChild(title);
    const v = observationValueText(latest);
    if (v) {
      li.appendChild(el('div', 'item-line', group.length > 1 ? 'Latest: ' : '', el('span', 'value', v)));
    }
    const points = [];
    group.forEach((obs) => {
      const t = fhirDateMillis(clinicalDate(obs));
      const series = numericSeries(obs);
      if (!series.length || isNaN(t)) return;
      const values = new Map();
      for (const s of series) values.set(s.name || 'value', s.value);
      points.push({ t, values, obs });
    });
    if (points.length > 1) {
      const unit = numericSeries(latest).map((s) => s.unit).find(Boolean) || '';
      const first = points[0].t, last = points[points.length - 1].t;
      const chartTitle = (conceptText(latest.code) || 'Values') + ': ' + points.length + ' readings from ' +
        dateFmt.format(new Date(first)) + ' to ' + dateFmt.format(new Date(last)) + (unit ? ' (' + unit + ')' : '');
      const { node, names } = drawChart(points, chartTitle);
      li.appendChild(node);
      const legend = el('div', 'chart-legend', points.length + ' readings' + (unit ? ', ' + unit : ''));
      if (names.length > 1) {
        names.forEach((n, i) => {
          const swatch = svg('svg', { width: 10, height: 10, viewBox: '0 0 10 10', 'aria-hidden': 'true' });
          swatch.appendChild(svg('rect', { width: 10, height: 10, fill: SERIES_COLOURS[i % SERIES_COLOURS.length] }));
          append(legend, ' ', swatch, ' ', n);
        });
      }
      li.appendChild(legend);
      // The values as text too (screen readers, print, exact numbers).
      const older = group.slice(0, -1).reverse().map((obs) => {
        const d = clinicalDate(obs);
        return (d ? formatFhirDate(d) + ': ' : '') + observationValueText(obs);
      });
      li.appendChild(el('p', 'readings', 'Earlier: ' + older.join('; ')));
    } else if (group.length > 1) {
      const older = group.slice(0, -1).reverse().map((obs) => {
        const d = clinicalDate(obs);
        return (d ? formatFhirDate(d) + ': ' : '') + observationValueText(obs);
      });
      li.appendChild(el('p', 'readings', 'Earlier: ' + older.join('; ')));
    }
    append(li, metaLine(latest));
    return li;
  }

  function renderVitals(resources, model, list) {
    const groups = new Map();
    const rest = [];
    for (const r of resources) {
      if (r.resourceType !== 'Observation') { rest.push(r); continue; }
      const k = conceptKey(r.code);
      if (!groups.has(k)) groups.set(k, []);
      groups.get(k).push(r);
    }
    for (const g of groups.values()) {
      g.sort((a, b) => (fhirDateMillis(clinicalDate(a)) || 0) - (fhirDateMillis(clinicalDate(b)) || 0));
      list.appendChild(renderVitalGroup(g));
    }
    for (const r of rest) list.appendChild(renderItem('vitals', r, model));
  }

  // ---------- page-level rendering ----------

  function renderBanner(model, payload) {
    const banner = el('div', 'banner');
    const comp = model.compositions[0];
    const made = model.timestamps[0] || (comp && str(comp.date)) || '';
    const when = made ? 'Summary made ' + formatFhirDate(made) + '.' : 'Summary made at an unknown time.';
    banner.appendChild(el('p', '', when + ' It may be incomplete: it shows what the patient chose to share, and entries the patient has not shared are not shown.'));
    if (payload.live) banner.appendChild(el('p', 'live', "Live link: shows the record as of the patient's last sync."));
    if (payload.label) banner.appendChild(el('p', '', 'Link label: ' + payload.label));
    if (comp && str(comp.title)) banner.appendChild(el('p', 'notes', 'Document: ' + comp.title));
    return banner;
  }

  function renderPatient(model) {
    const comp = model.compositions[0];
    let patient = comp && comp.subject ? model.resolve(comp.subject) : null;
    if (!patient || patient.resourceType !== 'Patient') patient = model.patients[0];
    const box = el('section', 'patient');
    box.id = 'patient';
    if (!patient) {
      box.appendChild(el('h2', '', 'Patient not named in the summary'));
      return box;
    }
    box.appendChild(el('h2', '', humanName(patient.name) || 'Patient (no name given)'));
    const facts = el('p', 'facts');
    if (str(patient.birthDate)) facts.appendChild(el('span', '', 'Born ' + formatFhirDate(patient.birthDate)));
    if (str(patient.gender)) facts.appendChild(el('span', '', 'Gender: ' + patient.gender));
    if (facts.childNodes.length) box.appendChild(facts);
    const ids = arr(patient.identifier).filter((i) => i && str(i.value)).slice(0, 3).map((i) => {
      const kind = conceptText(i.type) || str(i.system);
      return (kind ? kind + ': ' : '') + i.value;
    });
    if (ids.length) box.appendChild(el('p', 'ids', 'Identifiers: ' + ids.join('; ')));
    return box;
  }

  function renderSection(sec, model) {
    const node = el('section', 'sec');
    node.id = sec.id;
    const h = el('h2', '', sec.title);
    if (sec.resources.length) append(h, ' ', el('span', 'count', '(' + sec.resources.length + ')'));
    node.appendChild(h);
    if (!sec.resources.length && sec.narrative) {
      node.appendChild(el('p', 'sec-note', 'Narrative only: ' + sec.narrative.slice(0, 2000)));
      return node;
    }
    if (!sec.resources.length) {
      node.appendChild(el('p', 'empty', 'None recorded / not available'));
      if (sec.emptyReason) node.appendChild(el('p', 'sec-note', 'Reason: ' + sec.emptyReason));
      return node;
    }
    const list = el('ul', 'items');
    if (sec.id === 'vitals') {
      renderVitals(sec.resources, model, list);
    } else {
      for (const r of sec.resources) list.appendChild(renderItem(sec.id, r, model));
    }
    node.appendChild(list);
    return node;
  }

  function renderSummary(model, payload, notes) {
    const root = $('summary');
    root.textContent = '';
    root.appendChild(renderBanner(model, payload));
    root.appendChild(renderPatient(model));
    for (const sec of buildSections(model)) root.appendChild(renderSection(sec, model));
    if (notes.length) {
      const n = el('div', 'notes');
      for (const t of notes) n.appendChild(el('p', '', t));
      root.appendChild(n);
    }
  }

  // ---------- flow ----------

  let payload = null;
  let busy = false;

  function stop(state, message) {
    setStatus(state, message);
    $('access').hidden = true;
    document.body.setAttribute('data-viewer', 'stopped');
  }

  async function open(event) {
    event.preventDefault();
    if (busy || !payload) return;
    const recipient = $('recipient').value.trim();
    const passcode = $('passcode').value;
    if (!recipient) {
      setStatus('error', 'Enter your name: the patient sees who opened their summary.');
      $('recipient').focus();
      return;
    }
    if (payload.passcode && !passcode) {
      setStatus('error', 'Enter the passcode the patient gave you.');
      $('passcode').focus();
      return;
    }
    if (payload.exp !== undefined && payload.exp * 1000 <= Date.now()) {
      stop('expired', 'This link expired on ' + dateTimeFmt.format(new Date(payload.exp * 1000)) + '. Ask the patient for a new one.');
      return;
    }
    try { localStorage.setItem(RECIPIENT_STORAGE_KEY, recipient); } catch (_) { /* storage off */ }
    busy = true;
    $('open').disabled = true;
    $('summary').textContent = '';
    setStatus('loading', 'Opening the summary…');
    try {
      const files = await fetchFiles(payload, recipient, passcode);
      const model = new Model();
      const notes = [];
      let shown = 0;
      if (files.noLongerValid) notes.push('The patient has marked this summary as no longer valid.');
      for (const f of files) {
        if (!isFhirJson(f.contentType) || f.jwe === null) {
          notes.push('The link also holds a file of type "' + f.contentType.slice(0, 60) + '" that this viewer does not show.');
          continue;
        }
        const text = await decryptJwe(f.jwe, payload.key);
        let json;
        try { json = JSON.parse(text); } catch (_) { throw new ViewerError('error', 'The summary was decrypted but is not valid FHIR JSON.'); }
        model.addFhir(json);
        shown++;
      }
      if (!shown) throw new ViewerError('error', MSG.nothingToShow);
      renderSummary(model, payload, notes);
      $('access').hidden = true;
      $('print').hidden = false;
      setStatus('ok', 'Summary decrypted and shown below.' + (notes.length ? ' ' + notes.join(' ') : ''));
    } catch (e) {
      const err = e instanceof ViewerError ? e : new ViewerError('error', 'Something went wrong while opening the summary.');
      setStatus(err.state, err.message);
      if (err.state === 'locked' || err.state === 'revoked') {
        $('access').hidden = true;
      } else if (err.state === 'wrong-passcode') {
        $('passcode').value = '';
        $('passcode').focus();
      }
    } finally {
      busy = false;
      $('open').disabled = false;
    }
  }

  function init() {
    $('print').addEventListener('click', () => window.print());
    window.addEventListener('hashchange', () => location.reload());
    try {
      payload = parsePayload(location.hash || '');
    } catch (_) {
      payload = null;
      stop('damaged', MSG.damaged);
      return;
    }
    if (payload.label) {
      $('link-label').textContent = payload.label;
      $('link-label').hidden = false;
    }
    if (payload.exp !== undefined && payload.exp * 1000 <= Date.now()) {
      stop('expired', 'This link expired on ' + dateTimeFmt.format(new Date(payload.exp * 1000)) + '. Ask the patient for a new one.');
      return;
    }
    if (payload.passcode) $('passcode-row').hidden = false;
    try {
      const saved = localStorage.getItem(RECIPIENT_STORAGE_KEY);
      if (saved && !$('recipient').value) $('recipient').value = saved;
    } catch (_) { /* storage off */ }
    $('access').addEventListener('submit', open);
    $('open').disabled = false;
    document.body.setAttribute('data-viewer', 'ready');
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', init);
  else init();
})();
