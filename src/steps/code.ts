import { existsSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { tsImport } from 'tsx/esm/api';
import { z } from 'zod';
import type { Transform, TransformContext } from '../api.js';
import type { ComponentContext, ComponentDefinition, Step, StepContext } from '../core/component.js';
import { ComponentConfigError, FlotillaError, isTransient } from '../core/errors.js';
import type { FlotillaRecord } from '../core/record.js';

const TS_EXTENSIONS = ['.ts', '.mts', '.cts', '.tsx'];
const JS_EXTENSIONS = ['.js', '.mjs', '.cjs'];

export const codeStepSchema = z
  .object({
    kind: z.literal('code'),
    name: z.string().min(1).optional(),
    module: z
      .string()
      .min(1)
      .refine((m) => [...TS_EXTENSIONS, ...JS_EXTENSIONS].includes(path.extname(m)), {
        message: `expected a path to a ${[...TS_EXTENSIONS, ...JS_EXTENSIONS].join(', ')} file`,
      })
      .describe(
        'TypeScript or JavaScript module, relative to the topology file, e.g. ./transforms/enrich.ts.',
      ),
    export: z
      .string()
      .min(1)
      .default('default')
      .describe('Name of the exported transform (default: the default export).'),
    options: z
      .record(z.string(), z.unknown())
      .default({})
      .describe('Passed to the transform as ctx.options.'),
  })
  .strict()
  .describe(
    'Runs a batch transform from a TypeScript/JavaScript module (src/api.ts: Transform), for what YAML cannot say.',
  );

export type CodeStepConfig = z.infer<typeof codeStepSchema>;

/** A code step's module that cannot be used: missing, failing to load, or without the export. */
export class CodeModuleError extends ComponentConfigError {
  constructor(
    readonly step: string,
    readonly modulePath: string,
    problem: string,
    options?: { cause?: unknown },
  ) {
    super('module', `step '${step}' (code): module ${modulePath}: ${problem}`, options);
  }
}

/**
 * The module's exports as written. A file outside an ESM package (no `"type": "module"` above
 * it) is compiled to CommonJS, whose exports Node puts under `default`, marked `__esModule`.
 */
function esModuleExports(mod: Record<string, unknown>): Record<string, unknown> {
  const d = mod.default as { __esModule?: boolean } | null | undefined;
  return typeof d === 'object' && d?.__esModule ? (d as Record<string, unknown>) : mod;
}

/** Imports the module (.ts through tsx) and returns its named export, checked to be a function. */
export async function loadTransform(
  step: string,
  config: Pick<CodeStepConfig, 'module' | 'export'>,
  baseDir: string,
): Promise<Transform<unknown>> {
  const file = path.resolve(baseDir, config.module);
  if (!existsSync(file)) throw new CodeModuleError(step, config.module, `no such file (${file})`);
  const url = pathToFileURL(file).href;
  let mod: Record<string, unknown>;
  try {
    mod = TS_EXTENSIONS.includes(path.extname(file))
      ? await tsImport(url, import.meta.url)
      : await import(url);
  } catch (err) {
    throw new CodeModuleError(step, config.module, `failed to load: ${(err as Error).message}`, {
      cause: err,
    });
  }
  const exports = esModuleExports(mod);
  const fn = exports[config.export];
  if (fn === undefined) {
    const exported = Object.keys(exports);
    throw new CodeModuleError(
      step,
      config.module,
      `has no export '${config.export}' (it exports: ${exported.join(', ') || 'nothing'})`,
    );
  }
  if (typeof fn !== 'function') {
    throw new CodeModuleError(
      step,
      config.module,
      `export '${config.export}' is ${fn === null ? 'null' : typeof fn}, expected a transform function (records, ctx) => records`,
    );
  }
  return fn as Transform<unknown>;
}

/**
 * Calls the transform once per batch. Records it dead-letters itself keep its reason; if it
 * throws (or returns something else than an array), the batch's other records are dead-lettered
 * with reason `code` and that error, and the partition flows on.
 */
export class CodeStep implements Step {
  constructor(
    readonly name: string,
    private readonly transform: Transform<unknown>,
    private readonly options: Record<string, unknown>,
    private readonly component: ComponentContext,
  ) {}

  async process(records: FlotillaRecord[], ctx: StepContext): Promise<FlotillaRecord[]> {
    let rejected: Set<FlotillaRecord> | undefined;
    const transformCtx: TransformContext<unknown> = {
      topic: ctx.topic,
      partition: ctx.partition,
      deadLetter: (record, reason, error) => {
        rejected ??= new Set();
        rejected.add(record);
        ctx.deadLetter(record, reason, error);
      },
      options: this.options,
      step: this.name,
      topology: this.component.topology,
      logger: this.component.logger,
    };
    try {
      const out = await this.transform(records, transformCtx);
      if (!Array.isArray(out)) {
        throw new FlotillaError(
          `transform returned ${out === null ? 'null' : typeof out}, expected an array of records`,
        );
      }
      return out;
    } catch (err) {
      // An outage the transform waits out: the worker re-runs the batch (see TransientError).
      if (isTransient(err)) throw err;
      for (const r of records) if (!rejected?.has(r)) ctx.deadLetter(r, 'code', err);
      return [];
    }
  }
}

export const codeStep: ComponentDefinition<typeof codeStepSchema, Step> = {
  kind: 'code',
  description: codeStepSchema.description ?? '',
  schema: codeStepSchema,
  create: async (config, ctx) => {
    const name = config.name ?? 'code';
    const transform = await loadTransform(name, config, ctx.baseDir);
    const logger = ctx.logger.child({ step: name });
    return new CodeStep(name, transform, config.options, { ...ctx, logger });
  },
};
