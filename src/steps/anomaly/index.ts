export type { DetectorSpec, ModelKind, SeriesState, Verdict } from './detector.js';
export { SeriesDetector } from './detector.js';
export type { AnomalyStepConfig, Tuning } from './schema.js';
export { anomalyStepSchema, defaultSpec } from './schema.js';
export type { PartitionState } from './series-table.js';
export type { AnomalyFields, ModelParameters } from './step.js';
export { AnomalyStep, anomalyStep, seriesKeyOf } from './step.js';
