import { quotaStep } from '../tenancy/quota-step.js';
import { anomalyStep } from './anomaly/index.js';
import { codeStep } from './code.js';
import { decodeStep } from './decode.js';
import { filterStep } from './filter.js';
import { mapStep } from './map.js';
import { qualityStep } from './quality/index.js';
import { windowStep } from './window/index.js';

/** Every step kind. A new step is one file plus its entry here. */
export const stepKinds = [
  decodeStep,
  filterStep,
  mapStep,
  qualityStep,
  codeStep,
  anomalyStep,
  windowStep,
  quotaStep,
] as const;
