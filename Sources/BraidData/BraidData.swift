// Datasets, splits, input adaptation and batching.
