import { z } from 'zod';
import { sinkKinds } from '../sinks/index.js';
import { sourceKinds } from '../sources/index.js';
import { stepKinds } from '../steps/index.js';

type JsonSchema = {
  type?: string | string[];
  const?: unknown;
  enum?: unknown[];
  default?: unknown;
  description?: string;
  items?: JsonSchema;
  anyOf?: JsonSchema[];
  oneOf?: JsonSchema[];
  properties?: Record<string, JsonSchema>;
  required?: string[];
  minimum?: number;
  maximum?: number;
};

const MAX_SAFE = Number.MAX_SAFE_INTEGER;

/** A short type for the options table: `'a' \| 'b'`, `integer ≥ 1`, `string[]`, `object`. */
function typeOf(s: JsonSchema): string {
  if (s.enum) return s.enum.map((v) => `\`${String(v)}\``).join(' \\| ');
  if (s.const !== undefined) return `\`${String(s.const)}\``;
  const alternatives = s.anyOf ?? s.oneOf;
  if (alternatives) return [...new Set(alternatives.map(typeOf))].join(' \\| ');
  if (s.type === 'array') return `${s.items ? typeOf(s.items) : 'any'}[]`;
  const type = Array.isArray(s.type) ? s.type.join(' \\| ') : (s.type ?? 'any');
  const bounds = [
    s.minimum !== undefined && s.minimum > -MAX_SAFE ? `≥ ${s.minimum}` : '',
    s.maximum !== undefined && s.maximum < MAX_SAFE ? `≤ ${s.maximum}` : '',
  ].filter(Boolean);
  return bounds.length ? `${type} ${bounds.join(', ')}` : type;
}

const cell = (text: string) => text.replace(/\|/g, '\\|').replace(/\n/g, ' ');

function section(title: string, kinds: readonly { kind: string; description: string; schema: z.ZodType }[]) {
  const out = [`## ${title}`, ''];
  for (const k of kinds) {
    const json = z.toJSONSchema(k.schema, { io: 'input', unrepresentable: 'any' }) as JsonSchema;
    out.push(
      `### \`${k.kind}\``,
      '',
      k.description,
      '',
      '| option | type | default | |',
      '|---|---|---|---|',
    );
    for (const [name, prop] of Object.entries(json.properties ?? {})) {
      if (name === 'kind') continue;
      const required = json.required?.includes(name) && prop.default === undefined;
      const dflt =
        prop.default !== undefined ? `\`${JSON.stringify(prop.default)}\`` : required ? '**required**' : '';
      out.push(`| \`${name}\` | ${typeOf(prop)} | ${cell(dflt)} | ${cell(prop.description ?? '')} |`);
    }
    out.push('');
  }
  return out;
}

/** The reference of every source, step and sink kind, generated from their schemas. */
export function topologyReference(): string {
  return [
    '# Topology reference',
    '',
    '<!-- Generated from the component schemas by `flotilla schema --markdown` (npm run build). Do not edit. -->',
    '',
    'Every component is `{ kind: <kind>, ...options }`; unknown options are errors. Durations',
    'accept `500ms`, `30s`, `5m`, `1h` where the option says so. `${VAR}` and `${VAR:-default}`',
    'are replaced in every string. The pages in this folder explain each kind in depth.',
    '',
    ...section('Sources', sourceKinds),
    ...section('Steps', stepKinds),
    ...section('Sinks', sinkKinds),
  ].join('\n');
}
