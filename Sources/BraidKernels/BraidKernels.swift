// Braid kernels: forward (and later backward) CPU kernels, one file per op family.
