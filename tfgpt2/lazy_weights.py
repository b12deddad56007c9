"""Loading a checkpoint without a second copy of the weights in memory.

`SafetensorsState` is a state dict that reads one tensor when asked for it (the header gives every
key and shape up front); `uninitialized_variables()` creates Keras variables whose memory the OS maps
only when it is written. `from_pretrained` uses both: the model's variables are the only full copy,
each checkpoint tensor lives just long enough to be assigned, so the peak stays near the checkpoint's
bytes at any model size (benchmarks/scale.py).
"""

import contextlib
import json
import os

import keras
import numpy as np
import tensorflow as tf


class SafetensorsState:
    """{key: float32 array} over one or more .safetensors files, each tensor read on access.

    The file is opened per tensor: safetensors memory-maps it, and the pages a read touched stay in
    the process's resident set while the map is open, so one map held across all reads would count
    the whole file a second time.
    """

    def __init__(self, paths):
        from safetensors import safe_open

        self._where, self._shapes = {}, {}
        for path in paths:
            with safe_open(path, framework="numpy") as f:
                for key in f.keys():
                    self._where[key] = path
                    self._shapes[key] = tuple(f.get_slice(key).get_shape())

    @classmethod
    def from_index(cls, index_path):
        """The shards a `model.safetensors.index.json` names."""
        with open(index_path, encoding="utf-8") as f:
            files = sorted(set(json.load(f)["weight_map"].values()))
        return cls([os.path.join(os.path.dirname(index_path), name) for name in files])

    def shape(self, key):
        return self._shapes[key]

    def keys(self):
        return self._where.keys()

    def items(self):
        return ((key, self[key]) for key in self._where)

    def __contains__(self, key):
        return key in self._where

    def __iter__(self):
        return iter(self._where)

    def __len__(self):
        return len(self._where)

    def get(self, key, default=None):
        return self[key] if key in self._where else default

    def __getitem__(self, key):
        from safetensors import safe_open

        with safe_open(self._where[key], framework="numpy") as f:
            return np.asarray(f.get_tensor(key), np.float32)

    def read_slice(self, key, index):
        """`self[key][index]` reading only those elements (`index`: a tuple of slices)."""
        from safetensors import safe_open

        with safe_open(self._where[key], framework="numpy") as f:
            return np.asarray(f.get_slice(key)[index], np.float32)


class RenamedState:
    """A state dict seen under other keys (`names`: new key -> the state's key), read on access."""

    def __init__(self, state, names):
        self._state, self._names = state, names

    def keys(self):
        return self._names.keys()

    def __contains__(self, key):
        return key in self._names

    def __getitem__(self, key):
        return self._state[self._names[key]]

    def shape(self, key):
        return shape_of(self._state, self._names[key])

    def read_slice(self, key, index):
        return read_slice(self._state, self._names[key], index)


def shape_of(state, key):
    """A state-dict entry's shape without reading it when the state is lazy."""
    return state.shape(key) if hasattr(state, "shape") else tuple(state[key].shape)


def read_slice(state, key, index):
    """`state[key][index]` as float32, reading only that part when the state is lazy."""
    if hasattr(state, "read_slice"):
        return state.read_slice(key, index)
    return np.asarray(state[key][index], np.float32)


class PendingInitializers:
    """The variables `uninitialized_variables` created, with the initializer each one skipped."""

    def __init__(self):
        self.variables = []

    def initialize(self, skip=()):
        """Runs the skipped initializer of every variable not in `skip` (those were assigned)."""
        done = {id(v) for v in skip}
        for variable, initializer in self.variables:
            if id(variable) not in done:
                variable.assign(initializer(variable.shape, dtype=variable.dtype))


@contextlib.contextmanager
def uninitialized_variables():
    """Keras variables created inside start as uninitialized memory (tf.raw_ops.Empty, which the
    variable adopts without a copy); yields the PendingInitializers that must run for every one the
    caller does not assign. Random init of a 1.5B-parameter model would otherwise write 6 GB of values
    only to overwrite them."""
    pending = PendingInitializers()
    cls = keras.Variable
    original = cls._initialize_with_initializer

    def empty(variable, initializer):
        variable._initialize(tf.raw_ops.Empty(shape=variable._shape, dtype=tf.as_dtype(variable._dtype),
                                                init=False))
        pending.variables.append((variable, initializer))

    cls._initialize_with_initializer = empty
    try:
        yield pending
    finally:
        cls._initialize_with_initializer = original
