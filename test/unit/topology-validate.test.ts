import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../src/core/errors.js';
import { sinkKinds } from '../../src/sinks/index.js';
import { stepKinds } from '../../src/steps/index.js';
import { topologySchema } from '../../src/topology/schema.js';
import { parseAndValidate } from '../../src/topology/validate.js';

const valid = `name: t
source:
  kind: embedded
  topic: in
steps:
  - kind: decode
    format: json
sinks:
  - kind: stdout
`;

function problems(text: string, env: NodeJS.ProcessEnv = {}): string[] {
  try {
    parseAndValidate(text, 'topo.yaml', topologySchema, env);
  } catch (err) {
    if (err instanceof ConfigError) return err.message.split('\n');
    throw err;
  }
  return [];
}

describe('topology validation', () => {
  it('accepts a valid file and fills defaults', () => {
    const config = parseAndValidate(valid, 'topo.yaml', topologySchema, {});
    expect(config.source).toEqual({
      kind: 'embedded',
      topic: 'in',
      partitions: 3,
      start: 'earliest',
      max_batch: 500,
    });
  });

  it.each([
    [
      'an unknown key, with a suggestion',
      valid.replace('format: json', 'format: json\n  - kind: filter\n    exrp: value.n > 1'),
      [
        'topo.yaml:8:5: steps[1].expr: missing required key (expected string)',
        "topo.yaml:9:5: steps[1].exrp: unknown key 'exrp' (did you mean 'expr'?); expected one of: kind, name, expr",
      ],
    ],
    [
      'an unknown step kind',
      valid.replace('kind: decode', 'kind: decod'),
      [
        `topo.yaml:6:11: steps[0].kind: unknown kind 'decod' (did you mean 'decode'?); expected one of: ${stepKinds.map((k) => k.kind).join(', ')}`,
      ],
    ],
    [
      'an unknown sink kind',
      valid.replace('kind: stdout', 'kind: stdot'),
      [
        `topo.yaml:9:11: sinks[0].kind: unknown kind 'stdot' (did you mean 'stdout'?); expected one of: ${sinkKinds.map((k) => k.kind).join(', ')}`,
      ],
    ],
    [
      'an unknown top-level key',
      valid.replace('sinks:', 'sink:'),
      [
        'topo.yaml:1:1: sinks: missing required key (expected array)',
        "topo.yaml:8:1: sink: unknown key 'sink' (did you mean 'sinks'?); expected one of: name, description, group, source, steps, sinks, dead_letter",
      ],
    ],
    [
      'an expression with a syntax error',
      valid.replace('format: json', 'format: json\n  - kind: filter\n    expr: value.n >'),
      [
        'topo.yaml:9:11: steps[1].expr: expected an expression but found end of expression at column 10',
        '  value.n >',
        '           ^',
      ],
    ],
    [
      'a Kafka source with both topics and a pattern',
      valid.replace('kind: embedded\n  topic: in', 'kind: kafka\n  topics: [a]\n  pattern: "^a"'),
      ["topo.yaml:3:3: source: give exactly one of 'topics' or 'pattern'"],
    ],
    [
      'a Kafka pattern that is not a regular expression',
      valid.replace('kind: embedded\n  topic: in', 'kind: kafka\n  pattern: "metrics.(*"'),
      ['topo.yaml:4:12: source.pattern: not a valid regular expression'],
    ],
    [
      'a start time that is not a time',
      valid.replace('kind: embedded\n  topic: in', 'kind: kafka\n  topics: [a]\n  start: yesterday'),
      [
        "topo.yaml:5:10: source.start: expected 'earliest', 'latest' or an ISO-8601 time such as 2026-01-01T00:00:00Z, found 'yesterday'",
      ],
    ],
    [
      'a name that does not match its pattern, with what is allowed',
      valid.replace('name: t', 'name: "my topology"'),
      [
        'topo.yaml:1:7: name: expected letters, digits, ".", "_" and "-", starting with a letter or digit, found \'my topology\'',
      ],
    ],
    [
      'a number out of range',
      valid.replace('topic: in', 'topic: in\n  partitions: 0'),
      ['topo.yaml:5:15: source.partitions: expected a number >= 1, found number 0'],
    ],
    [
      'a wrong enum value in a sink',
      valid.replace('kind: stdout', 'kind: kafka\n    topic: out\n    compression: zstd'),
      ["topo.yaml:11:18: sinks[0].compression: expected one of 'none', 'gzip', 'lz4', found 'zstd'"],
    ],
    [
      'a wrong type',
      valid.replace('topic: in', 'topic: in\n  partitions: many'),
      ["topo.yaml:5:15: source.partitions: expected number, found 'many'"],
    ],
    [
      'a wrong enum value',
      valid.replace('topic: in', 'topic: in\n  start: earlist'),
      [
        "topo.yaml:5:10: source.start: expected one of 'earliest', 'latest', found 'earlist' (did you mean 'earliest'?)",
      ],
    ],
    [
      'a missing required key',
      valid.replace('name: t\n', ''),
      ['topo.yaml:1:1: name: missing required key (expected string)'],
    ],
    [
      'no sinks',
      valid.replace('sinks:\n  - kind: stdout\n', 'sinks: []\n'),
      ['topo.yaml:8:8: sinks: at least one sink'],
    ],
    [
      'invalid YAML',
      valid.replace('format: json', 'format: [json'),
      [
        'topo.yaml:8:1: invalid YAML: Flow sequence in block collection must be sufficiently indented and end with a ]',
      ],
    ],
    [
      'an unset environment variable',
      valid.replace('topic: in', 'topic: ${IN_TOPIC}'),
      [
        'topo.yaml:4:10: source.topic: environment variable IN_TOPIC is not set (write ${IN_TOPIC:-default} for a default)',
      ],
    ],
  ])('reports %s with file, line and path', (_what, text, expected) => {
    expect(problems(text)).toEqual(expected);
  });

  it('interpolates environment variables, with defaults', () => {
    const text = valid.replace('topic: in', 'topic: ${IN_TOPIC}\n  start: ${START:-latest}');
    const config = parseAndValidate(text, 'topo.yaml', topologySchema, { IN_TOPIC: 'metrics' });
    expect(config.source).toMatchObject({ topic: 'metrics', start: 'latest' });
  });
});
