// A gateway written from docs/gateway.md alone, in JavaScript with the stock `jose` library: it opens the
// box's messages (a JWS nested in a JWE), makes the contract's cross-checks and prints the claims as JSON
// lines. Input on stdin: {"gateway_key": PKCS#8 PEM, "device_keys": {id: SPKI PEM}, "tokens": [compact JWE]}.
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
  const claims = JSON.parse(new TextDecoder().decode(payload));
  for (const name of routing) if (claims[name] !== outer[name]) return refuse("mismatch");
  return claims;
}

for (const token of input.tokens) {
  try {
    process.stdout.write(JSON.stringify(await open(token)) + "\n");
  } catch (err) {
    process.stdout.write(JSON.stringify(refuse(err.code || err.name)) + "\n");
  }
}
