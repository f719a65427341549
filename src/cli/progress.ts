/**
 * Progress of a long CLI job (produce, replay, pipeline status): a redrawn bar on a terminal,
 * a plain line every few seconds otherwise, and a summary line at the end. Output goes to
 * stderr so stdout stays for data.
 */

export interface ProgressStream {
  write(chunk: string): unknown;
  isTTY?: boolean;
  columns?: number;
}

/** Structured fields of a progress line, for a logger. */
export interface ProgressFields {
  done: number;
  total?: number;
  perSecond: number;
  elapsedSeconds: number;
  etaSeconds?: number;
}

export interface ProgressOptions {
  /** What is progressing, e.g. `metrics → kafka:metrics`. */
  label: string;
  /** Expected count; absent or infinite: no bar, no ETA. */
  total?: number;
  /** Plural noun for the summary, default `records`. */
  unit?: string;
  /** Default process.stderr. */
  stream?: ProgressStream;
  /** Redraw a bar in place; default: whether `stream` is a terminal. */
  tty?: boolean;
  /** Without a terminal: one line every this many ms (default 5000). */
  logIntervalMs?: number;
  /** Without a terminal, lines go to this logger (fields + message) instead of `stream`. */
  logger?: { info(fields: object, message: string): void };
  /** Milliseconds; injectable for tests. */
  clock?: () => number;
}

export interface ProgressSummary {
  done: number;
  seconds: number;
  perSecond: number;
}

const TTY_REDRAW_MS = 200;
/** The rate shown is over this trailing window, so it follows changes without jitter. */
const RATE_WINDOW_MS = 5000;
const clearLine = '\r\x1b[2K';

const countFormat = new Intl.NumberFormat('en-US', { maximumFractionDigits: 0 });

export function formatCount(n: number): string {
  return countFormat.format(n);
}

/** `m:ss`, or `h:mm:ss` from an hour; `--:--` when unknown. */
export function formatDuration(seconds: number | undefined): string {
  if (seconds === undefined || !Number.isFinite(seconds) || seconds < 0) return '--:--';
  const s = Math.round(seconds);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const ss = String(s % 60).padStart(2, '0');
  return h > 0 ? `${h}:${String(m).padStart(2, '0')}:${ss}` : `${m}:${ss}`;
}

export function renderBar(fraction: number, width: number): string {
  const filled = Math.round(Math.min(1, Math.max(0, fraction)) * width);
  return `[${'█'.repeat(filled)}${'░'.repeat(width - filled)}]`;
}

function percent(f: ProgressFields): string {
  return f.total ? `${Math.floor((f.done / f.total) * 100)}%` : '';
}

/** One line of progress; `barWidth` > 0 draws a bar (terminal mode). */
export function formatProgress(label: string, f: ProgressFields, barWidth = 0): string {
  const rate = `${formatCount(f.perSecond)}/s`;
  if (f.total === undefined) {
    return `${label}  ${formatCount(f.done)}  ${rate}  elapsed ${formatDuration(f.elapsedSeconds)}`;
  }
  const counts = `${formatCount(f.done)}/${formatCount(f.total)}`;
  const eta = `ETA ${formatDuration(f.etaSeconds)}`;
  if (barWidth > 0) {
    return `${label} ${renderBar(f.done / f.total, barWidth)} ${percent(f).padStart(4)}  ${counts}  ${rate}  ${eta}`;
  }
  return `${label}: ${counts} (${percent(f)}), ${rate}, ${eta}`;
}

export function formatSummary(label: string, s: ProgressSummary, unit = 'records'): string {
  return `${label}: ${formatCount(s.done)} ${unit} in ${s.seconds.toFixed(2)} s (${formatCount(s.perSecond)} ${unit}/s)`;
}

export class Progress {
  private readonly stream: ProgressStream;
  private readonly tty: boolean;
  private readonly clock: () => number;
  private readonly started: number;
  private readonly total: number | undefined;
  private readonly timer: NodeJS.Timeout;
  private done = 0;
  /** (time, done) samples over the last RATE_WINDOW_MS, oldest first; one per tick, so bounded. */
  private samples: { at: number; done: number }[] = [];
  private finished = false;

  constructor(private readonly options: ProgressOptions) {
    this.stream = options.stream ?? process.stderr;
    this.tty = options.tty ?? this.stream.isTTY === true;
    this.clock = options.clock ?? (() => performance.now());
    this.total = Number.isFinite(options.total) ? options.total : undefined;
    this.started = this.clock();
    this.samples.push({ at: this.started, done: 0 });
    // A timer rather than redrawing on update: a stalled job still shows its rate falling.
    this.timer = setInterval(() => this.tick(), this.tty ? TTY_REDRAW_MS : (options.logIntervalMs ?? 5000));
    this.timer.unref();
  }

  /** Sets the count done so far (cheap: drawing happens on the timer). */
  update(done: number): void {
    this.done = done;
  }

  /** The current figures (the rate over the trailing window). */
  fields(): ProgressFields {
    const now = this.clock();
    const oldest = this.samples[0] ?? { at: this.started, done: 0 };
    const span = (now - oldest.at) / 1000;
    const perSecond = span > 0 ? (this.done - oldest.done) / span : 0;
    const fields: ProgressFields = {
      done: this.done,
      perSecond,
      elapsedSeconds: (now - this.started) / 1000,
    };
    if (this.total !== undefined) {
      fields.total = this.total;
      if (perSecond > 0) fields.etaSeconds = Math.max(0, this.total - this.done) / perSecond;
    }
    return fields;
  }

  /** Clears the bar and writes the summary line; the rate here is the whole run's average. */
  finish(): ProgressSummary {
    clearInterval(this.timer);
    const seconds = (this.clock() - this.started) / 1000;
    const summary = { done: this.done, seconds, perSecond: seconds > 0 ? this.done / seconds : 0 };
    if (this.finished) return summary;
    this.finished = true;
    const line = formatSummary(this.options.label, summary, this.options.unit);
    if (this.tty) this.stream.write(`${clearLine}${line}\n`);
    else this.emit(line, summary);
    return summary;
  }

  private tick(): void {
    const now = this.clock();
    this.samples.push({ at: now, done: this.done });
    while (this.samples.length > 2 && now - (this.samples[0]?.at ?? now) > RATE_WINDOW_MS)
      this.samples.shift();
    const fields = this.fields();
    if (this.tty) {
      this.stream.write(`${clearLine}${formatProgress(this.options.label, fields, this.barWidth(fields))}`);
    } else {
      this.emit(formatProgress(this.options.label, fields), fields);
    }
  }

  private emit(line: string, fields: object): void {
    if (this.options.logger) this.options.logger.info(fields, line);
    else this.stream.write(`${line}\n`);
  }

  /** As wide as the terminal leaves room for, between 10 and 40 cells; 0 (no bar) when too narrow. */
  private barWidth(fields: ProgressFields): number {
    const text = formatProgress(this.options.label, fields, 1).length - 3;
    const room = (this.stream.columns ?? 80) - 1 - text - 3;
    return room < 10 ? 0 : Math.min(40, room);
  }
}
