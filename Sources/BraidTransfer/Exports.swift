// A program fine-tuning with BraidTransfer also loads, runs and saves models (BraidRuntime)
// and handles training's own types (optimisers, schedules, checkpoints).
@_exported import BraidRuntime
@_exported import BraidTraining
