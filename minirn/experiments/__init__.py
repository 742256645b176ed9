"""The paper's experiments: the reproduction pipeline, its table, figures and norm-statistics probes."""
