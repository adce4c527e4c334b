"""Layer 2, core: pure JAX for one run (tasks, models, the training segment, metrics, neuron
analysis). No pandas and no files: the engine vmaps and shards these functions over runs."""
