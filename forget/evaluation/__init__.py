"""How good the models are: accuracy with intervals, membership inference, and the settings plan.

- `stats`: the statistics, pure numpy functions of arrays and counts (no workspace, no torch).
- `evaluate`: the report's values, and running the statistics on a workspace's models and data.
- `plan`: training candidate layouts in memory on a file, before a workspace exists, and choosing one.
"""
