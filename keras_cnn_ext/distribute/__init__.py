"""Scale-out on existing engines: `tf.distribute` strategies for training (and, in
`keras_cnn_ext.distribute.tuning`, KerasTuner's chief/worker mode with bounded waits).

Training runs `model.fit` under every strategy. Under `MultiWorkerMirroredStrategy`, Keras 3.15
needs two small fixes (`_keras_compat`, installed by `create_strategy("multi_worker")`); with them
two localhost workers reach the same weights as one process. See docs/scaling-out.md.

Example:

>>> import keras_cnn_ext as kce
>>> strategy = kce.distribute.create_strategy("default")
>>> kce.distribute.global_batch_size(32, strategy)
32
"""

from keras_cnn_ext.distribute.placement import (  # noqa: F401
    Placement,
    check_backend,
    check_resumed_strategy,
    run_output,
)
from keras_cnn_ext.distribute.strategy import (  # noqa: F401
    STRATEGIES,
    TF_CONFIG,
    WorkerInfo,
    configure_cpu_replicas,
    create_strategy,
    global_batch_size,
    shard_by_data,
    synchronize_batch_norm,
    worker_info,
    worker_output_dir,
)
