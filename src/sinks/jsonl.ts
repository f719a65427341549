import { z } from 'zod';
import type { FlotillaRecord } from '../core/record.js';

export const jsonlShape = {
  name: z.string().min(1).optional(),
  format: z
    .enum(['value', 'envelope'])
    .default('value')
    .describe('value: the record value per line; envelope: {id, key, timestamp, source, value}.'),
};

/** One JSON line per record; a Buffer value (never decoded) is written as UTF-8 text. */
export function toJsonLines(records: FlotillaRecord[], format: 'value' | 'envelope'): string {
  let out = '';
  for (const r of records) {
    const value = Buffer.isBuffer(r.value) ? r.value.toString('utf8') : r.value;
    out += `${JSON.stringify(
      format === 'value' ? value : { id: r.id, key: r.key, timestamp: r.timestamp, source: r.source, value },
    )}\n`;
  }
  return out;
}
