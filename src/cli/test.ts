import { existsSync, readFileSync } from 'node:fs';
import { parseDocument } from 'yaml';
import { FlotillaError } from '../core/errors.js';
import { createLogger } from '../observability/logger.js';
import { formatProfile } from '../steps/quality/index.js';
import { formatResult, runFixture, summarize, updateFixture } from '../testing/driver.js';
import { fixturePathFor } from '../testing/fixture.js';
import type { Command } from './main.js';

const indent = (text: string) => text.replace(/^/gm, '  ');

/** The fixture to run for FILE: itself, or the `<name>.test.yaml` beside a topology. */
function fixtureFileFor(file: string): string {
  const sibling = fixturePathFor(file);
  if (sibling === file || existsSync(sibling)) return sibling;
  if (existsSync(file) && parseDocument(readFileSync(file, 'utf8')).has('source')) {
    throw new FlotillaError(
      `${file} is a topology with no fixture beside it: write ${sibling} (see docs/testing.md)`,
    );
  }
  return file;
}

export const test: Command = {
  summary: 'run topologies on fixture records and compare their outputs with the expected ones',
  needsFiles: true,
  options: { update: { type: 'boolean' }, profile: { type: 'boolean' } },
  usage: `Usage: flotilla test [--update] [--profile] FILE...

FILE is a fixture (e.g. topologies/metrics.test.yaml) or a topology whose fixture
<name>.test.yaml sits beside it. The topology runs with its source replaced by the
embedded log fed with the fixture's input records and its sinks by in-memory
collectors; what each sink and the dead-letter topic received is compared with the
fixture's expect section (see docs/testing.md).

  --update   write the actual outputs into the fixture's expect section
  --profile  print the field profile of each quality step after its run (see docs/quality.md)

Exit status 0 when every fixture passes (or was updated), 1 on any difference.`,
  async run({ positionals, values }) {
    const logger = createLogger();
    // The topology's own info logs would drown the report; FLOTILLA_LOG_LEVEL shows them.
    if (!process.env.FLOTILLA_LOG_LEVEL) logger.level = 'warn';
    let failed = 0;
    for (const file of positionals) {
      const fixtureFile = fixtureFileFor(file);
      const result = await runFixture(fixtureFile, { logger });
      if (values.update) {
        updateFixture(result);
        console.log(`updated ${fixtureFile}: ${summarize(result)}`);
      } else {
        if (!result.passed) failed++;
        (result.passed ? console.log : console.error)(formatResult(result));
      }
      if (values.profile) {
        for (const { step, profile } of result.profiles) {
          console.log(`profile of step '${step}' (${profile.records} records):`);
          console.log(indent(formatProfile(profile)));
        }
      }
    }
    return failed > 0 ? 1 : 0;
  },
};
