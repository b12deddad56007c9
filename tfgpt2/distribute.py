"""Training on several devices or machines: the tf.distribute strategy `fit` runs under, and its chief.

    >>> import numpy as np
    >>> from tfgpt2 import distribute, training
    >>> strategy = distribute.strategy_from("auto")  # no TF_CONFIG: one device; with a cluster in it, all workers
    >>> distribute.is_chief(strategy), strategy.num_replicas_in_sync
    (True, 1)
    >>> recipe = training.TrainingRecipe(n_embd=16, n_layer=1, n_head=2, seq_len=8, steps=2, batch_size=2)
    >>> with strategy.scope():  # the variables and the optimizer are created in the scope
    ...     model = recipe.new_model(vocab_size=64)
    ...     history = recipe.fit(model, np.arange(64).reshape(8, 8), verbose=0)
    >>> len(history.history["step_loss"])
    1

Every worker runs the same program with its own TF_CONFIG (`{"cluster": {"worker": ["host0:port",
"host1:port"]}, "task": {"type": "worker", "index": i}}`); each global batch is split across the
workers' replicas (tf.data's DATA sharding), the loss is averaged over them, so a step equals one step
of a single process on the whole batch. The chief (worker 0, or the task of type "chief") is the one
that writes checkpoints and files; every worker reads the checkpoint directory on resume, so it must
be storage all of them see (a shared file system or bucket).
"""

import json
import os
import tempfile

from tfgpt2.errors import GPT2InputError

STRATEGIES = ("auto", "mirrored", "multiworker")
TF_CONFIG_EXAMPLE = ('TF_CONFIG=\'{"cluster": {"worker": ["host0:12345", "host1:12345"]}, '
                     '"task": {"type": "worker", "index": 0}}\'')


def cluster_config():
    """TF_CONFIG parsed and checked, or None when it is unset or names a single task."""
    raw = os.environ.get("TF_CONFIG", "").strip()
    if not raw:
        return None
    try:
        config = json.loads(raw)
    except json.JSONDecodeError as e:
        raise GPT2InputError(f"TF_CONFIG is not JSON ({e.msg} at character {e.pos}); set it like "
                             f"{TF_CONFIG_EXAMPLE}") from None
    cluster, task = (config.get("cluster"), config.get("task")) if isinstance(config, dict) else (None, None)
    if not isinstance(cluster, dict) or not isinstance(task, dict):
        raise GPT2InputError(f"TF_CONFIG needs a \"cluster\" and a \"task\" object; set it like {TF_CONFIG_EXAMPLE}")
    kind, index = task.get("type"), task.get("index")
    members = cluster.get(kind)
    if not isinstance(members, list) or not isinstance(index, int) or not 0 <= index < len(members):
        raise GPT2InputError(f"TF_CONFIG's task {task} is not in its cluster {sorted(cluster)}; \"task\" needs "
                             "the \"type\" of one of the cluster's lists and an \"index\" into it")
    tasks = sum(len(v) for k, v in cluster.items() if k in ("chief", "worker") and isinstance(v, list))
    return config if tasks > 1 else None


def strategy_from(name="auto"):
    """The tf.distribute strategy `name` stands for.

    "multiworker": MultiWorkerMirroredStrategy over the cluster in TF_CONFIG (required);
    "mirrored": MirroredStrategy over the local devices (the GPUs, else the CPU);
    "auto": "multiworker" when TF_CONFIG names more than one worker, "mirrored" with more than one GPU,
    else TensorFlow's default strategy (one device). Call it before any other TensorFlow work: the
    collectives of a multi-worker strategy are set up once, when the program starts.
    """
    import tensorflow as tf

    if name not in STRATEGIES:
        raise GPT2InputError(f"unknown strategy {name!r}; pick one of {', '.join(STRATEGIES)}")
    cluster = cluster_config()
    if name == "multiworker" or (name == "auto" and cluster is not None):
        if cluster is None:
            raise GPT2InputError("--strategy multiworker needs TF_CONFIG naming two or more workers, set on each "
                                 f"worker with its own index, e.g. {TF_CONFIG_EXAMPLE}")
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "mirrored" or len(tf.config.list_physical_devices("GPU")) > 1:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def is_chief(strategy):
    """Whether this process writes checkpoints and output files (always, without a cluster)."""
    return bool(strategy.extended.should_checkpoint)


def check_batch(strategy, batch_size):
    """The global batch must split evenly over the replicas, or workers' steps would differ in size."""
    replicas = strategy.num_replicas_in_sync
    if batch_size % replicas:
        raise GPT2InputError(f"--batch-size {batch_size} does not split over {replicas} replicas; pass a multiple "
                             f"of {replicas}")


def backup(strategy, directory, save_freq="epoch"):
    """keras.callbacks.BackupAndRestore that only the chief writes; every worker restores from it."""
    import keras

    chief = is_chief(strategy)

    class ChiefBackupAndRestore(keras.callbacks.BackupAndRestore):
        def _save_model(self):
            if chief:  # the variables are mirrored: the chief's copy is every worker's
                super()._save_model()
                return
            # reading the metrics' variables (synchronized on read) is a collective every worker joins
            with tempfile.TemporaryDirectory() as scratch:
                self.model.save_weights(os.path.join(scratch, "discarded.weights.h5"))

    return ChiefBackupAndRestore(directory, save_freq=save_freq, delete_checkpoint=False)
