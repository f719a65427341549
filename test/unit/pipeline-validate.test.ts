import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../src/core/errors.js';
import { findCycle, flowTree } from '../../src/jobs/dag.js';
import { PipelineParamError, parsePipeline, resolveParams } from '../../src/jobs/pipeline.js';

function problems(text: string): string[] {
  try {
    parsePipeline(text, '/tmp/p.yaml', {}, 'p.yaml');
  } catch (err) {
    if (err instanceof ConfigError) return err.message.split('\n');
    throw err;
  }
  throw new Error('expected the pipeline to be invalid');
}

const header = `name: daily
params: { day: null }
tasks:
`;

describe('pipeline validation', () => {
  it('accepts a three-task DAG and orders it', () => {
    const p = parsePipeline(
      `${header}  load:
    kind: load
    needs: [clean]
    sink: { kind: stdout }
  clean:
    kind: transform
    needs: [extract]
    steps: [{ kind: filter, expr: "value.n > 0" }]
  extract:
    kind: extract
    source: { kind: postgres, query: "SELECT * FROM t WHERE day = {day}" }
`,
      '/tmp/p.yaml',
      {},
    );
    expect(p.order).toEqual(['extract', 'clean', 'load']);
    expect(p.config.tasks.extract?.retries).toBe(2);
    expect(p.tree.children.get(null)).toEqual(['load']);
    expect(p.tree.children.get('load')).toEqual(['clean']);
  });

  it('names an unknown need with file, line, path and a suggestion', () => {
    const lines = problems(`${header}  extract:
    kind: extract
    source: { kind: clickhouse, query: "SELECT 1" }
  load:
    kind: load
    needs: [extrat]
    sink: { kind: stdout }
`);
    expect(lines).toContain(
      "p.yaml:9:13: tasks.load.needs[0]: unknown task 'extrat' (did you mean 'extract'?); tasks: extract, load",
    );
  });

  it('reports a cycle with its path', () => {
    const lines = problems(`${header}  a:
    kind: extract
    source: { kind: clickhouse, query: "SELECT 1" }
  b:
    kind: transform
    needs: [a, c]
    steps: [{ kind: filter, expr: "true" }]
  c:
    kind: transform
    needs: [b]
    steps: [{ kind: filter, expr: "true" }]
`);
    expect(lines).toEqual([expect.stringMatching(/^p\.yaml:9:5: tasks\.b\.needs: cycle b → c → b$/)]);
  });

  it('rejects a load with nothing to read, a self-need and an undeclared query parameter', () => {
    const lines = problems(`${header}  x:
    kind: extract
    needs: [x]
    source: { kind: postgres, query: "SELECT * FROM t WHERE d = {dya}" }
  load:
    kind: load
    sink: { kind: stdout }
`);
    expect(lines).toEqual([
      "p.yaml:6:13: tasks.x.needs[0]: task 'x' cannot need itself",
      "p.yaml:7:38: tasks.x.source.query: unknown parameter '{dya}' (did you mean 'day'?); declared under params: day",
      "p.yaml:9:5: tasks.load.needs: a load task reads the records of its needs: add an extract or transform task to 'needs'",
    ]);
  });

  it('checks task config with the step and sink schemas', () => {
    const lines = problems(`${header}  x:
    kind: extract
    source: { kind: clickhous, query: "SELECT 1" }
  t:
    kind: transform
    needs: [x]
    steps: [{ kind: filter, exprr: "true" }]
`);
    expect(lines[0]).toMatch(
      /^p\.yaml:6:21: tasks\.x\.source\.kind: unknown kind 'clickhous' \(did you mean 'clickhouse'\?\)/,
    );
    expect(lines).toContainEqual(
      expect.stringMatching(
        /^p\.yaml:10:\d+: tasks\.t\.steps\[0\]\.exprr: unknown key 'exprr' \(did you mean 'expr'\?\)/,
      ),
    );
  });

  it('says what a pipeline or task name may be, at the name', () => {
    expect(
      problems(`name: daily run
tasks:
  9x: { kind: extract, source: { kind: postgres, query: "SELECT 1" } }
`),
    ).toEqual([
      `p.yaml:1:7: name: expected letters, digits, "_" and "-", starting with a letter, found 'daily run'`,
    ]);
    expect(
      problems(`name: daily
tasks:
  9x: { kind: extract, source: { kind: postgres, query: "SELECT 1" } }
`),
    ).toEqual([
      `p.yaml:3:3: tasks.9x: task name: expected letters, digits, "_" and "-", starting with a letter, found '9x'`,
    ]);
  });

  it('resolves parameters: defaults, overrides, unknown and missing ones', () => {
    const p = parsePipeline(
      `name: p
params: { day: null, limit: 10 }
tasks:
  x: { kind: extract, source: { kind: postgres, query: "SELECT {limit}" } }
`,
      '/tmp/p.yaml',
      {},
    );
    expect(resolveParams(p.config, { day: '2026-01-01' })).toEqual({ day: '2026-01-01', limit: 10 });
    expect(() => resolveParams(p.config, {})).toThrow(PipelineParamError);
    expect(() => resolveParams(p.config, { day: 'x', limt: 3 })).toThrow(/did you mean 'limit'/);
  });
});

describe('DAG to flow tree', () => {
  it('hangs a shared need under one dependent; the other waits for it', () => {
    const needs = new Map([
      ['a', []],
      ['b', ['a']],
      ['c', ['a']],
      ['d', ['b', 'c']],
    ]);
    expect(findCycle(needs)).toBeUndefined();
    const tree = flowTree(needs);
    expect(tree.children.get(null)).toEqual(['d']);
    expect(tree.children.get('d')?.sort()).toEqual(['b', 'c']);
    const adopter = tree.parent.get('a') as string;
    const other = adopter === 'b' ? 'c' : 'b';
    expect(tree.waitsFor.get(other)).toEqual(['a']);
    expect(tree.waitsFor.get(adopter)).toEqual([]);
    expect(tree.waitsFor.get('d')).toEqual([]);
  });

  it('finds a cycle through several tasks', () => {
    const needs = new Map([
      ['a', ['c']],
      ['b', ['a']],
      ['c', ['b']],
    ]);
    expect(findCycle(needs)).toEqual(['a', 'c', 'b', 'a']);
  });
});
