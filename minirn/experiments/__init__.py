"""The paper's experiments: the reproduction pipeline, its table, figures and norm-statistics probes,
and the default run's shipped models (:func:`default_models`)."""
from minirn.experiments.default_run import default_model_file, default_models, default_results

__all__ = ["default_model_file", "default_models", "default_results"]
