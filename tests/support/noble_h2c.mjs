// Test-only: RFC 9380 secp256k1_XMD:SHA-256_SSWU_RO_ by an independent implementation,
// noble-curves (npm @noble/curves, exact-pinned in package.json as a devDependency).
// Reads JSON [[msg_hex, dst_hex], ...] on stdin and prints JSON [compressed_point_hex, ...];
// tests/unit/crypto/test_h2c_noble.py compares the answers with vitalchain's C hash-to-curve.
import { secp256k1_hasher } from '@noble/curves/secp256k1.js';

const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
const cases = JSON.parse(Buffer.concat(chunks).toString('utf8'));
const out = cases.map(([msgHex, dstHex]) => {
  const point = secp256k1_hasher.hashToCurve(Buffer.from(msgHex, 'hex'), {
    DST: Buffer.from(dstHex, 'hex'),
  });
  return Buffer.from(point.toBytes(true)).toString('hex');
});
process.stdout.write(JSON.stringify(out));
