import { metrics } from '../observability/metrics.js';

export interface InflightLimits {
  records: number;
  bytes: number;
}

/**
 * Records and bytes a source handed to the handler and has not yet acknowledged to its broker,
 * bounded by the source's limits: the source stops fetching when the budget is full and
 * resumes once it is back under half (hysteresis, so it does not flap around the limit).
 */
export class InflightBudget {
  private records = 0;
  private bytes = 0;
  private drainWaiters: (() => void)[] = [];
  private roomWaiters: (() => void)[] = [];

  constructor(
    private readonly limits: InflightLimits,
    private readonly topology: string,
  ) {}

  add(records: number, bytes: number): void {
    this.adjust(records, bytes);
  }

  release(records: number, bytes: number): void {
    this.adjust(-records, -bytes);
    if (this.roomToResume()) for (const w of this.roomWaiters.splice(0)) w();
    if (this.records === 0) for (const w of this.drainWaiters.splice(0)) w();
  }

  /** At or above a limit: stop fetching. */
  full(): boolean {
    return this.over(1);
  }

  /** Below half of both limits: fetching may resume. */
  roomToResume(): boolean {
    return !this.over(0.5);
  }

  /** Resolves once `roomToResume()` holds. */
  waitForRoom(): Promise<void> {
    if (this.roomToResume()) return Promise.resolve();
    return new Promise((resolve) => this.roomWaiters.push(resolve));
  }

  /** Resolves once nothing is in flight. */
  drained(): Promise<void> {
    if (this.records === 0) return Promise.resolve();
    return new Promise((resolve) => this.drainWaiters.push(resolve));
  }

  private over(fraction: number): boolean {
    return this.records >= this.limits.records * fraction || this.bytes >= this.limits.bytes * fraction;
  }

  private adjust(records: number, bytes: number): void {
    this.records += records;
    this.bytes += bytes;
    metrics.inflightRecords.set({ topology: this.topology }, this.records);
    metrics.inflightBytes.set({ topology: this.topology }, this.bytes);
  }
}
