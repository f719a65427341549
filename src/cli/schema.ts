import { topologyReference } from '../topology/reference.js';
import { topologyJsonSchema } from '../topology/schema.js';
import type { Command } from './main.js';

export const schema: Command = {
  summary: 'print the JSON Schema of topology files, or (--markdown) the reference of every kind',
  options: { markdown: { type: 'boolean' } },
  usage: `Usage: flotilla schema [--markdown]

Prints the JSON Schema of topology files (schemas/topology.schema.json holds the same), or
with --markdown the reference of every source, step and sink kind (docs/reference.md).`,
  async run({ values }) {
    console.log(values.markdown ? topologyReference() : JSON.stringify(topologyJsonSchema(), null, 2));
    return 0;
  },
};
