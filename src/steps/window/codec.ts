import { FlotillaError } from '../../core/errors.js';

/** Window state that cannot be read back: a corrupt or foreign changelog entry. */
export class StateDecodeError extends FlotillaError {}

/** Appends binary fields to a growing buffer; `take()` returns them and starts over. */
export class StateWriter {
  private buf = Buffer.allocUnsafe(1024);
  private at = 0;

  private room(bytes: number): void {
    if (this.at + bytes <= this.buf.length) return;
    const next = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.at + bytes));
    this.buf.copy(next, 0, 0, this.at);
    this.buf = next;
  }

  u8(v: number): void {
    this.room(1);
    this.at = this.buf.writeUInt8(v, this.at);
  }

  u32(v: number): void {
    this.room(4);
    this.at = this.buf.writeUInt32BE(v, this.at);
  }

  f64(v: number): void {
    this.room(8);
    this.at = this.buf.writeDoubleBE(v, this.at);
  }

  str(s: string): void {
    const n = Buffer.byteLength(s);
    this.u32(n);
    this.room(n);
    this.at += this.buf.write(s, this.at);
  }

  bytes(b: Uint8Array): void {
    this.u32(b.length);
    this.room(b.length);
    this.buf.set(b, this.at);
    this.at += b.length;
  }

  /** The bytes written since the last `take`, as a buffer of their own. */
  take(): Buffer {
    const out = Buffer.from(this.buf.subarray(0, this.at));
    this.at = 0;
    return out;
  }
}

/** Reads what a StateWriter wrote, failing with a StateDecodeError on truncated input. */
export class StateReader {
  private at = 0;

  constructor(
    private readonly buf: Buffer,
    /** The changelog key, for error messages. */
    private readonly key: string,
  ) {}

  private need(bytes: number): void {
    if (this.at + bytes > this.buf.length) {
      throw new StateDecodeError(`window state entry '${this.key}' is truncated (${this.buf.length} bytes)`);
    }
  }

  u8(): number {
    this.need(1);
    return this.buf.readUInt8(this.at++);
  }

  u32(): number {
    this.need(4);
    const v = this.buf.readUInt32BE(this.at);
    this.at += 4;
    return v;
  }

  f64(): number {
    this.need(8);
    const v = this.buf.readDoubleBE(this.at);
    this.at += 8;
    return v;
  }

  str(): string {
    const n = this.u32();
    this.need(n);
    const s = this.buf.toString('utf8', this.at, this.at + n);
    this.at += n;
    return s;
  }

  bytes(): Buffer {
    const n = this.u32();
    this.need(n);
    const b = this.buf.subarray(this.at, this.at + n);
    this.at += n;
    return b;
  }

  /** Fails unless every byte was read: a longer entry was written by another layout. */
  end(): void {
    if (this.at !== this.buf.length) {
      throw new StateDecodeError(
        `window state entry '${this.key}' has ${this.buf.length - this.at} unexpected trailing bytes`,
      );
    }
  }
}
