import { loadTopology } from '../topology/load.js';
import type { TopologyConfig } from '../topology/schema.js';
import type { Command } from './main.js';

function describeSource(s: TopologyConfig['source']): string {
  switch (s.kind) {
    case 'generator':
      return `generator (${s.preset})`;
    case 'kafka':
      return `kafka ${s.topics?.join(', ') ?? `/${s.pattern}/`}`;
    case 'redis-stream':
      return `redis-stream ${s.streams.join(', ')}`;
    default:
      return `${s.kind} ${s.topic}`;
  }
}

export function textGraph(c: TopologyConfig): string {
  const lines = [`${c.name}`, `  source  ${describeSource(c.source)}`];
  for (const s of c.steps) lines.push(`  step    ${s.name ?? s.kind} (${s.kind})`);
  for (const s of c.sinks) lines.push(`  sink    ${s.name ?? s.kind} (${s.kind})`);
  lines.push(`  dlq     ${c.dead_letter?.topic ?? `${c.name}.dlq`}`);
  return lines.join('\n');
}

export function mermaidGraph(c: TopologyConfig): string {
  const ids: string[] = ['source'];
  const lines = ['flowchart LR', `  source[["${describeSource(c.source)}"]]`];
  c.steps.forEach((s, i) => {
    lines.push(`  step${i}["${s.name ?? s.kind}<br/><i>${s.kind}</i>"]`);
    lines.push(`  ${ids.at(-1)} --> step${i}`);
    ids.push(`step${i}`);
  });
  const last = ids.at(-1);
  c.sinks.forEach((s, i) => {
    lines.push(`  sink${i}[("${s.name ?? s.kind}<br/><i>${s.kind}</i>")]`);
    lines.push(`  ${last} --> sink${i}`);
  });
  lines.push(`  dlq{{"${c.dead_letter?.topic ?? `${c.name}.dlq`}"}}`);
  c.steps.forEach((_, i) => {
    lines.push(`  step${i} -. rejected .-> dlq`);
  });
  return lines.join('\n');
}

export const graph: Command = {
  summary: 'show a topology as text or a Mermaid flowchart',
  needsFiles: true,
  usage: 'Usage: flotilla graph FILE [--mermaid]',
  options: { mermaid: { type: 'boolean' } },
  async run({ positionals, values }) {
    const { config } = loadTopology(positionals[0] ?? '');
    console.log(values.mermaid ? mermaidGraph(config) : textGraph(config));
    return 0;
  },
};
