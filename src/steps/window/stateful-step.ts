export type { StateEntry, StatefulStep } from '../../core/component.js';
export { isStatefulStep } from '../../core/component.js';

/** Memory held by a stateful step, for the memory report. */
export interface StateStats {
  partitions: number;
  /** Open state units: window-keys for tumbling, pane-keys for sliding (state is per pane), sessions. */
  openWindowKeys: number;
  approxBytes: number;
  /**
   * Mean approximate bytes per open window-key: `base` (bounds, count, bookkeeping) and, for each
   * aggregate op in use, one aggregate of that op.
   */
  bytesPerWindowKey: Record<string, number>;
}
