"""Runs that know their configuration: an output folder or checkpoint never mixes two of them.

A run's output folder belongs to one configuration.  When a run claims a
folder (:func:`claim_output_folder`) it writes ``run.json``, the settings
that determine its results (:func:`run_settings`); a later run with other
settings is refused in one line that names the keys that differ, and the
same settings run again replace the folder's results (or continue them with
``--resume``).

Every checkpoint records :func:`model_meta`: the model to rebuild
(architecture, norm, p, input shape, classes, dataset) and the training run
that made it (seed, the recipe, adversarial training, the minirn version).
:func:`minirn.train.fit` resumes a checkpoint only when its record equals
the run's; :func:`minirn.serialization.load_model` rebuilds the model from it.

Settings in :data:`IGNORED` change where and how visibly a run works, never
its numbers, so they are neither recorded nor compared.
"""
from __future__ import annotations

import dataclasses
import json
import os

import minirn
from minirn import serialization

#: The manifest a run writes into the output folder it claims.
MANIFEST = "run.json"

#: Settings that do not change a run's results.
IGNORED = ("out", "progress", "resume", "device", "data_root", "download", "workers")

#: What a folder holds once a run has written into it (any of them without a manifest: an unknown run).
RUN_OUTPUTS = ("results.json", "results.md", "checkpoints")


class RunConflictError(ValueError):
    """An output folder or file holds the results of another configuration."""


def _json_values(obj):
    """``obj`` as it reads back from JSON (tuples become lists), so that recorded and new settings compare equal."""
    return json.loads(json.dumps(obj))


def run_settings(config) -> dict:
    """The settings that determine a run's results: ``config`` (a dataclass or a dict) without
    :data:`IGNORED`, with the minirn version, as JSON values."""
    fields = dataclasses.asdict(config) if dataclasses.is_dataclass(config) else dict(config)
    settings = {key: value for key, value in fields.items() if key not in IGNORED}
    settings["minirn_version"] = minirn.__version__
    return _json_values(settings)


def model_meta(data, recipe, *, model: str, norm: str, p: float, seed: int, adversarial=None, **training) -> dict:
    """What a checkpoint of one trained model records (its ``meta`` entry).

    data: the :class:`~minirn.data.Dataset` it trains on; recipe: its :class:`~minirn.train.Recipe`;
    model, norm, p: its network (:func:`minirn.models.build`); seed: of this model; adversarial: its
    :class:`~minirn.train.AdversarialTraining`, if any; training: any further setting that changes
    what it trains on (e.g. ``validation=500`` held-out images), recorded as given.
    """
    return _json_values({
        "dataset": data.name, "model": model, "norm": norm, "p": p,
        "in_channels": int(data.shape[0]), "num_classes": int(data.num_classes), "shape": list(data.shape),
        "seed": seed, **dataclasses.asdict(recipe),
        "adversarial": None if adversarial is None else dataclasses.asdict(adversarial),
        **training, "minirn_version": minirn.__version__,
    })


def differences(recorded: dict, wanted: dict, ignore=()) -> list[str]:
    """One phrase per key of ``wanted`` whose value ``recorded`` does not share:
    ``"epochs 2 there, 8 here"`` (``"(not recorded)"`` for a key ``recorded`` lacks)."""
    missing = object()
    found = []
    for key, value in wanted.items():
        old = recorded.get(key, missing)
        if key not in ignore and old != value:
            shown = "(not recorded)" if old is missing else json.dumps(old)
            found.append(f"{key} {shown} there, {json.dumps(value)} here")
    return found


def recorded_settings(out) -> dict | None:
    """The settings of the run that wrote folder ``out``: its manifest, else the ``config`` of its
    ``results.json`` (folders written before manifests existed); None for a folder no run wrote into.

    Raises :class:`RunConflictError` for a folder that holds a run's outputs but no readable record of them.
    """
    manifest = os.path.join(out, MANIFEST)
    results = os.path.join(out, "results.json")
    for path, read in ((manifest, lambda record: record["config"]), (results, _settings_of_results)):
        if os.path.exists(path):
            try:
                with open(path, encoding="utf-8") as f:
                    return read(json.load(f))
            except (OSError, ValueError, KeyError, TypeError) as exc:
                raise RunConflictError(f"{out} holds a run whose settings cannot be read from {path} ({exc}); "
                                       f"choose another --out, or delete {out} to replace it") from None
    left = [name for name in RUN_OUTPUTS if os.path.exists(os.path.join(out, name))]
    if left:
        raise RunConflictError(f"{out} holds {', '.join(left)} of a run that left no {MANIFEST}, so its "
                               f"configuration is unknown; choose another --out, or delete {out} to replace it")
    return None


def _settings_of_results(results: dict) -> dict:
    return {**run_settings(results["config"]), "minirn_version": results.get("versions", {}).get("minirn")}


def claim_output_folder(out, config, resume: bool = False) -> dict:
    """Make folder ``out`` this run's, or refuse in one line if it holds another configuration's results.

    A folder no run wrote into, or one that holds this configuration's results, is claimed: ``run.json``
    (``{"config": run_settings(config)}``) is written and the settings are returned.  The minirn version
    must match only with ``resume`` (a run continued under another version mixes two codes; a fresh
    run of the same settings just replaces the old results).
    """
    settings = run_settings(config)
    recorded = recorded_settings(out)
    if recorded is not None:
        found = differences(recorded, settings, ignore=() if resume else ("minirn_version",))
        if found:
            raise RunConflictError(f"{out} holds the results of another configuration ({'; '.join(found)}); "
                                   f"choose another --out, or delete {out} to replace them")
    os.makedirs(out, exist_ok=True)
    _write_json_atomically(os.path.join(out, MANIFEST), {"config": settings})
    return settings


def check_output_file(path, meta: dict) -> None:
    """Refuse in one line to overwrite ``path`` if it holds a model of another configuration than ``meta``
    (:func:`model_meta`), or something that is not a minirn model at all; a missing file is fine."""
    if not os.path.exists(path):
        return
    try:
        _, recorded = serialization.read_model(path)
    except serialization.CheckpointError:
        raise RunConflictError(f"{path} exists and is not a minirn model; choose another --out") from None
    found = differences(recorded, meta, ignore=("minirn_version",))
    if found:
        raise RunConflictError(f"{path} holds a model of another configuration ({'; '.join(found)}); "
                               "choose another --out, or delete it to replace it")


def _write_json_atomically(path, record) -> None:
    tmp_path = f"{path}.tmp"
    with open(tmp_path, "w", encoding="utf-8") as f:
        json.dump(record, f, indent=1)
    os.replace(tmp_path, path)
