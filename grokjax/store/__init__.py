"""Layer 3, store: what goes to disk and comes back (atomic files, Parquet tables with their
provenance, parameters, checkpoints, the cache folder, the folder lock)."""
