import { decodeStep } from './decode.js';

/** Every step kind. A new step is one file plus its entry here. */
export const stepKinds = [decodeStep] as const;
