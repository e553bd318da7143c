"""Progress of a training run on stderr: a tqdm bar per epoch on a terminal, one line per epoch otherwise.

The Trainer calls the progress callback after every step with a row (epoch, position, loss,
rollbacks, faults detected so far, and the test accuracy at an epoch's end). On a terminal each
epoch gets a bar (loss, accuracy, faults so far); piped to a file or a batch system's log, a bar
would be a single line of carriage returns, so there each epoch prints one plain line instead.
``--quiet`` turns both off.
"""

from __future__ import annotations

import sys
from typing import TextIO

from tqdm.auto import tqdm


class TrainProgress:
    """The ``progress`` callback of :meth:`Trainer.run` for the command line."""

    def __init__(self, epochs: int, steps_per_epoch: int, *, quiet: bool = False, stream: TextIO | None = None):
        self.epochs, self.per_epoch = epochs, steps_per_epoch
        self.stream = stream or sys.stderr
        self.quiet = quiet
        self.bars = not quiet and self.stream.isatty()
        self.bar: tqdm | None = None
        self.epoch = 0

    def __call__(self, row: dict) -> None:
        if self.quiet:
            return
        if row["epoch"] != self.epoch:  # a new epoch (or a rollback back into an earlier one)
            self._close()
            self.epoch = row["epoch"]
            if self.bars:
                self.bar = tqdm(
                    total=self.per_epoch,
                    desc=f"epoch {self.epoch}/{self.epochs}",
                    unit="step",
                    file=self.stream,
                    leave=True,
                    dynamic_ncols=True,
                )
        done = row["position"] - (self.epoch - 1) * self.per_epoch
        accuracy = row["test_accuracy"]
        if self.bar is not None:
            self.bar.n = done
            fields = {"loss": f"{row['loss']:.4f}", "faults detected": row["detected"]}
            if row["rollbacks"]:
                fields["rollbacks"] = row["rollbacks"]
            if accuracy is not None:
                fields["test accuracy"] = f"{accuracy:.4f}"
            self.bar.set_postfix(fields, refresh=False)
            self.bar.refresh()
        elif accuracy is not None:  # no terminal: one line per finished epoch
            line = (
                f"epoch {self.epoch}/{self.epochs}: step {row['position']}/{row['of']}, loss {row['loss']:.4f}, "
                f"test accuracy {accuracy:.4f}, faults detected {row['detected']}, rollbacks {row['rollbacks']}"
            )
            print(line, file=self.stream, flush=True)
        if accuracy is not None:  # the epoch is over: its bar stays on screen as it ended
            self._close()
            self.epoch = 0

    def _close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def close(self) -> None:
        """Close a bar left open (a run that stopped mid-epoch)."""
        self._close()
