import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../src/core/errors.js';
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
      valid.replace('format: json', 'fromat: json'),
      [
        'topo.yaml:6:5: steps[0].format: missing required key (expected one of json)',
        "topo.yaml:7:5: steps[0].fromat: unknown key 'fromat' (did you mean 'format'?); expected one of: kind, name, format",
      ],
    ],
    [
      'an unknown step kind',
      valid.replace('kind: decode', 'kind: decod'),
      [
        "topo.yaml:6:11: steps[0].kind: unknown kind 'decod' (did you mean 'decode'?); expected one of: decode, filter, map",
      ],
    ],
    [
      'a wrong type',
      valid.replace('topic: in', 'topic: in\n  partitions: many'),
      ["topo.yaml:5:15: source.partitions: expected number, found 'many'"],
    ],
    [
      'a wrong enum value',
      valid.replace('format: json', 'format: jsn'),
      ["topo.yaml:7:13: steps[0].format: expected one of 'json', found 'jsn' (did you mean 'json'?)"],
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
