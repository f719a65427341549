/** A binary min-heap of entries ordered by `due`. */
export class DueHeap<E extends { due: number }> {
  private readonly items: E[] = [];

  get size(): number {
    return this.items.length;
  }

  peek(): E | undefined {
    return this.items[0];
  }

  push(e: E): void {
    const items = this.items;
    let i = items.push(e) - 1;
    while (i > 0) {
      const parent = (i - 1) >>> 1;
      if ((items[parent] as E).due <= e.due) break;
      items[i] = items[parent] as E;
      i = parent;
    }
    items[i] = e;
  }

  pop(): E | undefined {
    const items = this.items;
    const top = items[0];
    const last = items.pop();
    if (top === undefined || last === undefined || items.length === 0) return top;
    let i = 0;
    for (;;) {
      const left = 2 * i + 1;
      if (left >= items.length) break;
      const right = left + 1;
      const child = right < items.length && (items[right] as E).due < (items[left] as E).due ? right : left;
      if ((items[child] as E).due >= last.due) break;
      items[i] = items[child] as E;
      i = child;
    }
    items[i] = last;
    return top;
  }
}
