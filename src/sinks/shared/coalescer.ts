import type { SinkContext } from '../../core/component.js';
import type { FlotillaRecord } from '../../core/record.js';

interface Waiting {
  records: FlotillaRecord[];
  ctx: SinkContext;
  resolve: () => void;
  reject: (err: unknown) => void;
}

/**
 * Batches by time: writes that arrive within `lingerMs` of the first (or until `maxRows` are
 * waiting) go to the database as one write. Each caller resolves when that write is
 * acknowledged, gets its own refused rows, and sees the error if it fails (and retries its own
 * records). Holds at most the callers' own records: the worker bounds what is in flight.
 */
export class Coalescer {
  private waiting: Waiting[] = [];
  private rows = 0;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly lingerMs: number,
    private readonly maxRows: number,
    private readonly write: (records: FlotillaRecord[], ctx: SinkContext) => Promise<void>,
  ) {}

  submit(records: FlotillaRecord[], ctx: SinkContext): Promise<void> {
    return new Promise((resolve, reject) => {
      this.waiting.push({ records, ctx, resolve, reject });
      this.rows += records.length;
      if (this.rows >= this.maxRows) this.flush();
      else this.timer ??= setTimeout(() => this.flush(), this.lingerMs);
    });
  }

  private flush(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    const batch = this.waiting;
    this.waiting = [];
    this.rows = 0;
    if (batch.length === 0) return;
    const owner = new Map<FlotillaRecord, SinkContext>();
    for (const w of batch) for (const r of w.records) owner.set(r, w.ctx);
    this.write(
      batch.flatMap((w) => w.records),
      { reject: (record, error) => owner.get(record)?.reject(record, error) },
    ).then(
      () => {
        for (const w of batch) w.resolve();
      },
      (err: unknown) => {
        for (const w of batch) w.reject(err);
      },
    );
  }
}
