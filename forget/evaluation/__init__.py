"""How good the models are: accuracy with intervals, membership inference, and the settings plan."""
