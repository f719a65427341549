import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import {
  formatCount,
  formatDuration,
  formatProgress,
  formatSummary,
  Progress,
  type ProgressOptions,
  renderBar,
} from '../../src/cli/progress.js';

/** A stream that keeps what was written. */
function capture(isTTY: boolean, columns = 100) {
  const chunks: string[] = [];
  return { chunks, stream: { isTTY, columns, write: (s: string) => chunks.push(s) } };
}

describe('progress formatting', () => {
  it('formats counts with separators and durations as m:ss or h:mm:ss', () => {
    expect(formatCount(1234567.4)).toBe('1,234,567');
    expect(formatDuration(0)).toBe('0:00');
    expect(formatDuration(65.4)).toBe('1:05');
    expect(formatDuration(3 * 3600 + 2 * 60 + 9)).toBe('3:02:09');
    expect(formatDuration(undefined)).toBe('--:--');
    expect(formatDuration(Number.POSITIVE_INFINITY)).toBe('--:--');
  });

  it('draws a bar of the given width, clamped to 0-100%', () => {
    expect(renderBar(0.5, 10)).toBe('[█████░░░░░]');
    expect(renderBar(0, 4)).toBe('[░░░░]');
    expect(renderBar(1.7, 4)).toBe('[████]');
  });

  it('says done/total, percent, rate and ETA, with or without a bar', () => {
    const fields = { done: 2500, total: 10_000, perSecond: 500, elapsedSeconds: 5, etaSeconds: 15 };
    expect(formatProgress('metrics', fields)).toBe('metrics: 2,500/10,000 (25%), 500/s, ETA 0:15');
    expect(formatProgress('metrics', fields, 8)).toBe(
      'metrics [██░░░░░░]  25%  2,500/10,000  500/s  ETA 0:15',
    );
  });

  it('shows elapsed time instead of a bar and ETA when the total is unknown', () => {
    expect(formatProgress('events', { done: 42_000, perSecond: 1000, elapsedSeconds: 42 })).toBe(
      'events  42,000  1,000/s  elapsed 0:42',
    );
  });

  it('summarises count, seconds and average rate', () => {
    expect(formatSummary('metrics', { done: 100_000, seconds: 9.991, perSecond: 10_009 })).toBe(
      'metrics: 100,000 records in 9.99 s (10,009 records/s)',
    );
  });
});

describe('Progress', () => {
  let now = 0;
  const clock = () => now;
  /** Advances the fake clock and the fake timers together. */
  const advance = (ms: number) => {
    now += ms;
    vi.advanceTimersByTime(ms);
  };
  const make = (options: Partial<ProgressOptions> & Pick<ProgressOptions, 'stream'>) =>
    new Progress({ label: 'metrics', total: 1000, clock, ...options });

  beforeEach(() => {
    now = 0;
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it('without a terminal, writes a plain line per interval with rate and ETA', () => {
    const out = capture(false);
    const progress = make({ stream: out.stream, logIntervalMs: 2000 });
    progress.update(100);
    advance(1000);
    expect(out.chunks).toEqual([]); // not before the interval
    progress.update(200);
    advance(1000);
    // 200 records in 2 s: 100/s, so the remaining 800 take 8 s.
    expect(out.chunks).toEqual(['metrics: 200/1,000 (20%), 100/s, ETA 0:08\n']);
    progress.update(600);
    advance(2000);
    // The rate is over the trailing 5 s, here the whole run: 600 in 4 s.
    expect(out.chunks[1]).toBe('metrics: 600/1,000 (60%), 150/s, ETA 0:03\n');
    expect(out.chunks.every((c) => !c.includes('\r'))).toBe(true);
  });

  it('without a terminal, sends lines to a logger with structured fields when given one', () => {
    const out = capture(false);
    const lines: { fields: object; message: string }[] = [];
    const progress = make({
      stream: out.stream,
      logIntervalMs: 1000,
      logger: { info: (fields, message) => lines.push({ fields, message }) },
    });
    progress.update(500);
    advance(1000);
    progress.update(1000);
    progress.finish();
    expect(out.chunks).toEqual([]);
    expect(lines.map((l) => l.message)).toEqual([
      'metrics: 500/1,000 (50%), 500/s, ETA 0:01',
      'metrics: 1,000 records in 1.00 s (1,000 records/s)',
    ]);
    expect(lines[0]?.fields).toMatchObject({ done: 500, total: 1000, perSecond: 500, etaSeconds: 1 });
  });

  it('on a terminal, redraws one line in place and ends with the summary', () => {
    const out = capture(true, 100);
    const progress = make({ stream: out.stream });
    progress.update(250);
    advance(1000);
    const redraws = out.chunks.length;
    expect(redraws).toBeGreaterThanOrEqual(4); // several redraws a second
    const last = out.chunks.at(-1) ?? '';
    expect(last.startsWith('\r\x1b[2K')).toBe(true);
    expect(last).not.toContain('\n');
    expect(last.slice(5)).toMatch(/^metrics \[█+░+\]\s+25%\s+250\/1,000\s+\d+\/s\s+ETA 0:0\d$/);
    expect(last.length).toBeLessThanOrEqual(100 + 5); // fits the terminal (+ the control sequence)

    progress.update(1000);
    now += 1000;
    const summary = progress.finish();
    expect(summary).toEqual({ done: 1000, seconds: 2, perSecond: 500 });
    expect(out.chunks.at(-1)).toBe('\r\x1b[2Kmetrics: 1,000 records in 2.00 s (500 records/s)\n');
    advance(5000);
    expect(out.chunks.length).toBe(redraws + 1); // no redraws after finish
  });

  it('rates over a trailing window, so a stall shows as a falling rate and no ETA', () => {
    const out = capture(false);
    const progress = make({ stream: out.stream, logIntervalMs: 1000 });
    for (let s = 1; s <= 3; s++) {
      progress.update(s * 100);
      advance(1000);
    }
    expect(progress.fields().perSecond).toBeCloseTo(100);
    advance(6000); // nothing more is done
    expect(progress.fields().perSecond).toBe(0);
    expect(progress.fields().etaSeconds).toBeUndefined();
    expect(out.chunks.at(-1)).toBe('metrics: 300/1,000 (30%), 0/s, ETA --:--\n');
  });

  it('leaves out the bar and ETA for an endless job', () => {
    const out = capture(false);
    const progress = make({ stream: out.stream, total: Number.POSITIVE_INFINITY, logIntervalMs: 1000 });
    progress.update(3000);
    advance(1000);
    expect(out.chunks).toEqual(['metrics  3,000  3,000/s  elapsed 0:01\n']);
    expect(progress.fields().total).toBeUndefined();
  });
});
