import type { CircuitConfig } from './config.js';
import { CircuitOpenError } from './errors.js';

export type CircuitState = 'closed' | 'open' | 'half-open';

/**
 * closed → open after `failures` consecutive failed writes → half-open once `cooldown` has passed:
 * one trial write goes through (others still fail fast); its success closes the circuit, its
 * failure opens it for another cooldown.
 */
export class CircuitBreaker {
  private state: CircuitState = 'closed';
  private consecutiveFailures = 0;
  private openedAt = 0;
  private probing = false;
  private lastError: unknown;

  constructor(
    private readonly sink: string,
    private readonly config: CircuitConfig,
    private readonly onChange: (state: CircuitState, lastError: unknown) => void,
    private readonly now: () => number = Date.now,
  ) {}

  get current(): CircuitState {
    return this.state;
  }

  /**
   * Called before a write: throws CircuitOpenError while open (or while another write probes).
   * Returns whether this write is the half-open trial; pass that to `succeeded`/`failed`.
   */
  enter(): boolean {
    if (this.state === 'closed') return false;
    const retryInMs = this.openedAt + this.config.cooldown * 1000 - this.now();
    if (this.state === 'open' && retryInMs <= 0) this.transition('half-open');
    if (this.state === 'half-open' && !this.probing) {
      this.probing = true;
      return true;
    }
    throw new CircuitOpenError(this.sink, Math.max(0, retryInMs), this.lastError);
  }

  /** Any write that lands shows the database answers again. */
  succeeded(probe: boolean): void {
    this.consecutiveFailures = 0;
    if (probe) this.probing = false;
    if (this.state !== 'closed') this.transition('closed');
  }

  failed(err: unknown, probe: boolean): void {
    this.lastError = err;
    this.consecutiveFailures++;
    if (probe) this.probing = false;
    if (probe || (this.state === 'closed' && this.consecutiveFailures >= this.config.failures)) {
      this.openedAt = this.now();
      this.transition('open');
    }
  }

  private transition(state: CircuitState): void {
    this.state = state;
    this.onChange(state, this.lastError);
  }
}
