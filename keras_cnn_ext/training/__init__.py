"""Training runs: `model.fit` into one run folder, kill-safe resume, one writer per folder.

The modules, in the order a run uses them:

* `config` — defaults, validation and what a resumed run keeps (cheap: the command line checks
  names and values with it before anything heavy is imported);
* `inputs` — a split's examples, the per-epoch seeded batches, the stateless augmentation;
* `fit` — `train` and `evaluate` (re-exported here: ``kce.training.train(...)``);
* `checkpointing` — atomic writes and the per-epoch checkpoint that ``resume=True`` reads;
* `lock` — the run-folder lock that keeps a second process out of a folder in use.
"""

from keras_cnn_ext.training.fit import (  # noqa: F401 - the package's public API
    RUN_FILES, build_and_compile, build_model, compile_model, default_output, evaluate,
    make_optimizer, train,
)
from keras_cnn_ext.training.lock import FolderLockedError, folder_lock  # noqa: F401

__all__ = ["train", "evaluate", "build_model", "compile_model", "build_and_compile",
           "make_optimizer", "default_output", "RUN_FILES", "folder_lock", "FolderLockedError"]
