import { topologyJsonSchema } from '../topology/schema.js';
import type { Command } from './main.js';

export const schema: Command = {
  summary: 'print the JSON Schema of topology files (for editor completion and checks)',
  usage: 'Usage: flotilla schema\n\nPrints the JSON Schema; schemas/topology.schema.json holds the same.',
  async run() {
    console.log(JSON.stringify(topologyJsonSchema(), null, 2));
    return 0;
  },
};
