/**
 * One partition's checkpoints, written in the order their batches were handed over. Values
 * that become ready while a write is under way go out together in the next write (group
 * commit): one write per batch when traffic is light, one for many batches under load, so a
 * slow durable write (a Kafka transaction) does not cap throughput.
 *
 * Once a batch fails before its checkpoint (its steps or sinks) or a write fails, nothing
 * enqueued after it is written: a later checkpoint would record state — and the offset it has
 * reached — past changes that never became durable.
 */
export class CheckpointQueue<T> {
  private tail: Promise<void> = Promise.resolve();
  private pending: { value: T; resolve: () => void; reject: (err: unknown) => void }[] = [];
  private writing = false;
  private failure: { error: unknown } | undefined;

  constructor(private readonly write: (values: T[]) => Promise<void>) {}

  /** Resolves once `value` — and every value enqueued before it — is written. */
  enqueue(value: Promise<T>): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.tail = this.tail
        .then(() => value)
        .then(
          (v) => {
            if (this.failure) return reject(this.failure.error);
            this.pending.push({ value: v, resolve, reject });
            this.drain();
          },
          (err: unknown) => {
            this.failure ??= { error: err };
            reject(err);
          },
        );
    });
  }

  private drain(): void {
    if (this.writing || this.pending.length === 0) return;
    this.writing = true;
    const group = this.pending.splice(0);
    this.write(group.map((g) => g.value))
      .then(
        () => {
          for (const g of group) g.resolve();
        },
        (err: unknown) => {
          this.failure ??= { error: err };
          for (const g of [...group, ...this.pending.splice(0)]) g.reject(err);
        },
      )
      .finally(() => {
        this.writing = false;
        this.drain();
      });
  }
}
