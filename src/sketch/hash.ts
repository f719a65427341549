/**
 * A 64-bit string hash made of two 32-bit lanes, for sketches that need well-spread bits
 * (HyperLogLog uses up to 16 bits for the register and the rest for the run of zeros).
 *
 * Both lanes read the UTF-16 code units two at a time as 32-bit blocks: the first lane is the
 * MurmurHash3 x86_32 round, the second the xxHash32 round with its own primes; the finish
 * cross-mixes the lanes as MurmurHash3 x86_128 does. Pure 32-bit integer math (Math.imul),
 * no BigInt, no allocation: the caller passes the two-word array the result goes into.
 */

const C1 = 0xcc9e2d51;
const C2 = 0x1b873593;
const P1 = 0x9e3779b1;
const P2 = 0x85ebca77;
const SEED_LOW = 0x5bd1e995;

const rotl = (x: number, r: number): number => (x << r) | (x >>> (32 - r));

function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

/** Hashes `text` into `out[0]` (top 32 bits) and `out[1]` (bottom 32 bits). */
export function hash64(text: string, out: Uint32Array): void {
  let h1 = 0;
  let h2 = SEED_LOW;
  const n = text.length;
  const even = n & ~1;
  for (let i = 0; i < even; i += 2) {
    const block = text.charCodeAt(i) | (text.charCodeAt(i + 1) << 16);
    let k = Math.imul(block, C1);
    k = Math.imul(rotl(k, 15), C2);
    h1 = rotl(h1 ^ k, 13);
    h1 = (Math.imul(h1, 5) + 0xe6546b64) | 0;
    h2 = Math.imul(rotl((h2 + Math.imul(block, P2)) | 0, 13), P1);
  }
  if (n !== even) {
    const block = text.charCodeAt(even);
    h1 ^= Math.imul(rotl(Math.imul(block, C1), 15), C2);
    h2 = Math.imul(rotl((h2 + Math.imul(block, P2)) | 0, 13), P1);
  }
  h1 ^= n;
  h2 ^= n;
  h1 = (h1 + h2) | 0;
  h2 = (h2 + h1) | 0;
  h1 = fmix32(h1);
  h2 = fmix32(h2);
  h1 = (h1 + h2) | 0;
  h2 = (h2 + h1) | 0;
  out[0] = h1;
  out[1] = h2;
}
