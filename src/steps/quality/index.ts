import type { ComponentDefinition, Step } from '../../core/component.js';
import { qualityStepSchema } from './schema.js';
import { QualityStep } from './step.js';

export { formatProfile, type QualityProfile } from './profile.js';
export type { QualityStepConfig } from './schema.js';
export {
  QualityError,
  type QualitySnapshot,
  QualityStateError,
  QualityStep,
  type QualityVerdict,
} from './step.js';

export const qualityStep: ComponentDefinition<typeof qualityStepSchema, Step> = {
  kind: 'quality',
  description: qualityStepSchema.description ?? '',
  schema: qualityStepSchema,
  create: (config, ctx) => new QualityStep(config, ctx),
};
