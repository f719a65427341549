/** The dependency graph of a pipeline's tasks: each task lists the tasks it needs. */
export type Needs = ReadonlyMap<string, readonly string[]>;

/**
 * A dependency cycle of two or more tasks, as the path that closes it (`['a', 'b', 'a']`), or
 * undefined.
 */
export function findCycle(needs: Needs): string[] | undefined {
  const state = new Map<string, 'open' | 'done'>();
  const path: string[] = [];
  const visit = (task: string): string[] | undefined => {
    state.set(task, 'open');
    path.push(task);
    for (const need of needs.get(task) ?? []) {
      // A task needing itself is reported on its own, as is a need that names no task.
      if (need === task || !needs.has(need)) continue;
      const s = state.get(need);
      if (s === 'open') return [...path.slice(path.indexOf(need)), need];
      if (s === undefined) {
        const cycle = visit(need);
        if (cycle) return cycle;
      }
    }
    path.pop();
    state.set(task, 'done');
    return undefined;
  };
  for (const task of needs.keys()) {
    if (state.has(task)) continue;
    const cycle = visit(task);
    if (cycle) return cycle;
  }
  return undefined;
}

/** Tasks in an order where each comes after everything it needs (declaration order among equals). */
export function topologicalOrder(needs: Needs): string[] {
  const order: string[] = [];
  const placed = new Set<string>();
  const place = (task: string) => {
    if (placed.has(task)) return;
    placed.add(task);
    for (const need of needs.get(task) ?? []) place(need);
    order.push(task);
  };
  for (const task of needs.keys()) place(task);
  return order;
}

/**
 * How a DAG runs as a BullMQ flow, which is a tree (a job has at most one parent). Each task
 * hangs under one of the tasks that need it (its parent waits for it through BullMQ); the tasks
 * nobody needs hang under the run's root. A task needed by several others is a child of one of
 * them only; the others wait for it themselves before they start (`waitsFor`).
 */
export interface FlowTree {
  /** Parent of each task; null: the run's root job. */
  parent: Map<string, string | null>;
  /** Children of each task, and of the root under the key null. */
  children: Map<string | null, string[]>;
  /** Per task, the needs that are not its children in the tree. */
  waitsFor: Map<string, string[]>;
}

export function flowTree(needs: Needs): FlowTree {
  const order = topologicalOrder(needs);
  const parent = new Map<string, string | null>();
  // Dependents come before their needs here: the first one met adopts the need.
  for (const task of [...order].reverse()) {
    if (!parent.has(task)) parent.set(task, null);
    for (const need of needs.get(task) ?? []) if (!parent.has(need)) parent.set(need, task);
  }
  const children = new Map<string | null, string[]>([[null, []]]);
  for (const task of order) children.set(task, []);
  for (const task of order) children.get(parent.get(task) ?? null)?.push(task);
  const waitsFor = new Map<string, string[]>();
  for (const task of order) {
    waitsFor.set(
      task,
      (needs.get(task) ?? []).filter((n) => parent.get(n) !== task),
    );
  }
  return { parent, children, waitsFor };
}
