"""Resumable training: a run stopped part-way goes on from its last epoch.

A MobileNetV2 recipe with twins takes one to three hours on a 2-core CPU,
long enough for a laptop to sleep or a session to end. After every epoch
`EpochSaver` writes what the next epoch needs into a folder beside the
model (`checkpoint_folder`): the network's weights, the optimizer's state
(step count, learning rate, moments), the early-stopping and learning-rate
schedules' counters with the best weights so far, the history and the
seconds spent. Running the same `train` command again finds the folder and
starts at the next epoch; another command (recipe, split, size, seed or
starting weights) starts over and says why. The folder is removed once the
model is written.

The caveat, which the card records: a resumed run is not bit-identical to
one that ran straight through. The input pipeline's random draws (order,
augmentation, which views become twins) start again from the seed, so the
epochs after the break see other draws than they would have.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from pathlib import Path

import keras
import numpy as np

from bloodcell.errors import BloodcellError

log = logging.getLogger("bloodcell")

STATE_FILE = "state.json"
# What each epoch's history row keeps from the logs.
ROW_KEYS = ("loss", "accuracy", "val_loss", "val_accuracy", "learning_rate")
# What a resumed run's card says about it.
RESUME_CAVEAT = ("stopped and resumed from the checkpoint saved after those epochs: weights, optimizer state and "
                 "schedules carried over exactly, but the input pipeline's random draws began again from the seed, "
                 "so the run is not bit-identical to one that ran straight through")


def checkpoint_folder(models_dir: Path, name: str) -> Path:
    """Where model `name`'s unfinished run keeps its checkpoint (hidden, so no model list shows it)."""
    return Path(models_dir) / f".{name}.unfinished"


def _canonical(fingerprint: dict) -> str:
    # Through JSON both ways, so a tuple in a recipe compares equal to the list it is saved as.
    return json.dumps(fingerprint, sort_keys=True, default=str)


def _save_arrays(path: Path, arrays: list[np.ndarray]) -> None:
    with open(path, "wb") as handle:  # a file object: np.savez would add ".npz" to a bare name
        np.savez(handle, *arrays)


def _load_arrays(path: Path) -> list[np.ndarray]:
    with np.load(path) as data:
        return [data[f"arr_{i}"] for i in range(len(data.files))]


class TrainingCheckpoint:
    """One training run's saved progress, phase by phase ("head", "fine_tune" or "train").

    Each phase's entry holds its history rows, the epochs done, whether it
    finished, the two schedules' state and the names of its weight files.
    """

    def __init__(self, folder: Path, fingerprint: dict):
        self.folder = Path(folder)
        self.fingerprint = json.loads(_canonical(fingerprint))
        self.state = {"fingerprint": self.fingerprint, "seconds": 0.0, "resumed_after_epochs": [], "phases": {}}
        self._started = time.perf_counter()
        self._seconds_before = 0.0

    def start_clock(self) -> None:
        """Training starts now: `seconds` counts from here, on top of earlier sittings'."""
        self._started = time.perf_counter()

    @classmethod
    def open(cls, folder: Path, fingerprint: dict) -> "TrainingCheckpoint":
        """The run's checkpoint: the saved one if it is of this very run, else a new, empty one."""
        checkpoint = cls(folder, fingerprint)
        state_path = checkpoint.folder / STATE_FILE
        if not state_path.is_file():
            return checkpoint
        try:
            saved = json.loads(state_path.read_text())
            same_run = _canonical(saved["fingerprint"]) == _canonical(checkpoint.fingerprint)
        except (OSError, ValueError, KeyError, TypeError):
            log.warning("the unfinished run's checkpoint in %s cannot be read; starting over", checkpoint.folder)
            return checkpoint
        if not same_run:
            log.warning("%s holds an unfinished run of another recipe, split, size, seed or start; "
                        "starting over", checkpoint.folder)
            return checkpoint
        checkpoint.state = saved
        checkpoint._seconds_before = float(saved["seconds"])
        done = checkpoint.epochs_done()
        checkpoint.state["resumed_after_epochs"].append(done)
        log.info("resuming after epoch %d from the checkpoint in %s (%.0f s of training so far)",
                 done, checkpoint.folder, checkpoint._seconds_before)
        return checkpoint

    def epochs_done(self) -> int:
        return sum(len(phase["rows"]) for phase in self.state["phases"].values())

    @property
    def seconds(self) -> float:
        """Training seconds over every sitting of this run."""
        return self._seconds_before + time.perf_counter() - self._started

    @property
    def resumed_after_epochs(self) -> list[int]:
        return list(self.state["resumed_after_epochs"])

    def phase(self, name: str) -> dict | None:
        return self.state["phases"].get(name)

    def weights(self, phase: str, which: str = "weights") -> list[np.ndarray]:
        return _load_arrays(self.folder / self.state["phases"][phase][which])

    def record(self, phase: str, entry: dict, arrays: dict[str, list[np.ndarray]]) -> None:
        """Save a phase's state and its arrays; the state file is replaced last, in one step.

        Files are named by epoch and the state names the ones it needs, so
        a run killed half-way through saving still finds the last complete
        epoch.
        """
        self.folder.mkdir(parents=True, exist_ok=True)
        epoch = entry["epochs_done"]
        tag = "end" if entry["finished"] else f"e{epoch}"
        for which, values in arrays.items():
            entry[which] = f"{phase}-{tag}-{which}.npz"
            _save_arrays(self.folder / entry[which], values)
        self.state["phases"][phase] = entry
        self.state["seconds"] = round(self.seconds, 1)
        temporary = self.folder / (STATE_FILE + ".tmp")
        temporary.write_text(json.dumps(self.state, indent=1) + "\n")
        os.replace(temporary, self.folder / STATE_FILE)
        needed = {name for saved in self.state["phases"].values() for key, name in saved.items()
                  if key in ("weights", "optimizer", "best_weights")}
        for path in self.folder.glob("*.npz"):
            if path.name not in needed:
                path.unlink()

    def remove(self) -> None:
        """The run is finished and its model written: the checkpoint has served."""
        shutil.rmtree(self.folder, ignore_errors=True)

    def saver(self, phase: str, early_stopping: keras.callbacks.EarlyStopping,
              reduce_lr: keras.callbacks.ReduceLROnPlateau) -> "EpochSaver":
        return EpochSaver(self, phase, early_stopping, reduce_lr)


class EpochSaver(keras.callbacks.Callback):
    """Saves a phase after each epoch and at its end; at its start, restores what was saved.

    It must come after the early-stopping and learning-rate callbacks: they
    reset their counters when training begins, and update them at each
    epoch's end, and this one restores and saves those counters.
    """

    def __init__(self, checkpoint: TrainingCheckpoint, phase: str, early_stopping: keras.callbacks.EarlyStopping,
                 reduce_lr: keras.callbacks.ReduceLROnPlateau):
        super().__init__()
        self.checkpoint = checkpoint
        self.phase = phase
        self.early_stopping = early_stopping
        self.reduce_lr = reduce_lr
        self.rows: list[dict] = []  # the phase's history: restored rows, then one per epoch run

    def on_train_begin(self, logs=None):
        saved = self.checkpoint.phase(self.phase)
        self.rows = list(saved["rows"]) if saved else []
        if not saved:
            return
        # Same recipe, other code (the network changed between versions): nothing to go on from.
        misfit = BloodcellError(f"the unfinished run in {self.checkpoint.folder} does not fit this network; "
                                "delete that folder to start over")
        try:
            self.model.set_weights(self.checkpoint.weights(self.phase))
        except ValueError:
            raise misfit from None
        optimizer = self.model.optimizer
        optimizer.build(self.model.trainable_variables)
        values = self.checkpoint.weights(self.phase, "optimizer")
        if [value.shape for value in values] != [tuple(variable.shape) for variable in optimizer.variables]:
            raise misfit
        for variable, value in zip(optimizer.variables, values):
            variable.assign(value)
        stopping, plateau = saved["early_stopping"], saved["reduce_lr"]
        self.early_stopping.best = stopping["best"]
        self.early_stopping.best_epoch = stopping["best_epoch"]
        self.early_stopping.wait = stopping["wait"]
        self.early_stopping.best_weights = self.checkpoint.weights(self.phase, "best_weights")
        self.reduce_lr.best = plateau["best"]
        self.reduce_lr.wait = plateau["wait"]
        self.reduce_lr.cooldown_counter = plateau["cooldown_counter"]

    def on_epoch_end(self, epoch, logs=None):
        self.rows.append({"epoch": epoch + 1, **{key: float(logs[key]) for key in ROW_KEYS}})
        stopping, plateau = self.early_stopping, self.reduce_lr
        entry = {
            "rows": self.rows, "epochs_done": epoch + 1, "finished": False,
            "stopped": bool(self.model.stop_training),
            "early_stopping": {"best": None if stopping.best is None else float(stopping.best),
                               "best_epoch": int(stopping.best_epoch), "wait": int(stopping.wait)},
            "reduce_lr": {"best": None if plateau.best is None else float(plateau.best), "wait": int(plateau.wait),
                          "cooldown_counter": int(plateau.cooldown_counter)},
        }
        self.checkpoint.record(self.phase, entry, {
            "weights": self.model.get_weights(),
            "optimizer": [keras.ops.convert_to_numpy(v) for v in self.model.optimizer.variables],
            "best_weights": stopping.best_weights if stopping.best_weights is not None else self.model.get_weights(),
        })

    def finish(self) -> None:
        """The phase is over and the best weights are back in the model: save them as the phase's result."""
        saved = self.checkpoint.phase(self.phase) or {}
        entry = {"rows": self.rows, "epochs_done": saved.get("epochs_done", 0), "finished": True}
        self.checkpoint.record(self.phase, entry, {"weights": self.model.get_weights()})
