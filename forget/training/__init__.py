"""Models: training shards slice by slice, the lineage each checkpoint logs, trusting a checkpoint, predicting."""
