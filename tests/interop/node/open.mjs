// A gateway written from docs/gateway.md alone, in JavaScript with the stock `jose` library: it opens the
// box's messages (a JWS nested in a JWE), makes the contract's cross-checks and claim checks (checks 2-6) and
// prints the claims as JSON lines. Input on stdin: {"gateway_key": PKCS#8 PEM, "device_keys": {id: SPKI PEM},
// "tokens": [compact JWE], and optionally "now" (ISO time), "max_age_s", "max_skew_s" for the age rule}.
import { readFileSync } from "node:fs";
import { compactDecrypt, compactVerify, decodeProtectedHeader, importPKCS8, importSPKI } from "jose";

const input = JSON.parse(readFileSync(0, "utf8"));
const gatewayKey = await importPKCS8(input.gateway_key, "ECDH-ES+A256KW");
const deviceKeys = {};
for (const [id, pem] of Object.entries(input.device_keys)) deviceKeys[id] = await importSPKI(pem, "ES256");

function refuse(reason) {
  return { refused: reason };
}

async function open(token) {
  const outer = decodeProtectedHeader(token);
  const routing = ["jti", "kind", "device"];
  if (outer.alg !== "ECDH-ES+A256KW" || outer.enc !== "A256GCM" || outer.cty !== "JWT") return refuse("algorithm");
  const key = deviceKeys[outer.device];
  if (!key) return refuse("unknown-device");
  // The plaintext is itself a compact JWS (cty JWT): not a JWT with claims, so no jwtDecrypt here.
  const { plaintext } = await compactDecrypt(token, gatewayKey, {
    keyManagementAlgorithms: ["ECDH-ES+A256KW"],
    contentEncryptionAlgorithms: ["A256GCM"],
  });
  const signed = new TextDecoder().decode(plaintext);
  const inner = decodeProtectedHeader(signed);
  if (inner.alg !== "ES256" || inner.typ !== "mynabox+jwt") return refuse("algorithm");
  if (inner.kid !== outer.device) return refuse("mismatch");
  const { payload } = await compactVerify(signed, key, { algorithms: ["ES256"] });
  const text = new TextDecoder().decode(payload);
  const claims = JSON.parse(text);
  const reason = claimsProblem(claims, text);
  if (reason) return refuse(reason);
  for (const name of routing) if (claims[name] !== outer[name]) return refuse("mismatch");
  if (claims.clock_synced && input.now) {
    const age = Date.parse(input.now) / 1000 - claims.iat;
    if (age > input.max_age_s) return refuse("expired");
    if (-age > input.max_skew_s) return refuse("future");
  }
  return claims;
}

const CLAIMS = ["body", "clock_synced", "device", "iat", "jti", "kind", "seq"];

// JSON.parse reads 5.0 as 5: integers are checked on the text too (Node 20 has no reviver source text).
function fraction(text, name) {
  return new RegExp(`"${name}"\\s*:\\s*-?[0-9]+[.eE]`).test(text);
}

function claimsProblem(claims, text) {
  if (typeof claims !== "object" || claims === null || Array.isArray(claims)) return "claims";
  const keys = Object.keys(claims).sort();
  if (keys.join() === CLAIMS.filter((k) => k !== "seq").join()) return "no-sequence";
  if (keys.join() !== CLAIMS.join()) return "claims";
  const ok =
    /^[0-9a-f]{32}$/.test(claims.jti) &&
    ["summary", "card-record", "audit", "state"].includes(claims.kind) &&
    /^[a-z0-9][a-z0-9-]{0,31}$/.test(claims.device) &&
    Number.isSafeInteger(claims.iat) && claims.iat >= 0 && claims.iat <= 2 ** 32 - 1 && !fraction(text, "iat") &&
    typeof claims.clock_synced === "boolean" &&
    Number.isSafeInteger(claims.seq) && claims.seq >= 1 && !fraction(text, "seq") &&
    typeof claims.body === "object" && claims.body !== null && !Array.isArray(claims.body);
  return ok ? null : "claims";
}

for (const token of input.tokens) {
  try {
    process.stdout.write(JSON.stringify(await open(token)) + "\n");
  } catch (err) {
    process.stdout.write(JSON.stringify(refuse(err.code || err.name)) + "\n");
  }
}
