import type { ComponentDefinition } from '../../core/component.js';
import { windowStepSchema } from './config.js';
import { WindowStep } from './window-step.js';

export type { WindowStepConfig } from './config.js';
export { windowStepSchema } from './config.js';
export type { StateEntry, StatefulStep, StateStats } from './stateful-step.js';
export { isStatefulStep } from './stateful-step.js';
export { WindowStateError, WindowStep } from './window-step.js';

export const windowStep: ComponentDefinition<typeof windowStepSchema, WindowStep> = {
  kind: 'window',
  description: windowStepSchema.description ?? '',
  schema: windowStepSchema,
  create: (config, ctx) => new WindowStep(config, ctx.topology),
};
