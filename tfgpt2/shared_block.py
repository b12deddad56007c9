"""SharedBlock: every transformer block as calls of one traced block function, weights passed in.

A graph that unrolls the blocks holds one copy of every layer's ops per forward pass it contains; the
TF Serving SavedModel has a dozen (serving_default, prefill, decode, and each decode loop of
`generate` / `generate_xla`), so its graphs grew with n_layer and tracing and saving them took more
memory than a gpt2-xl int8 file. Through SharedBlock a forward pass is n_layer call ops of one
function (per static token count), traced from block 0 with block i's values mapped onto its
variables; TF's function runtime and XLA inline the calls, so the computation is the same.
"""

import keras
import tensorflow as tf
from tensorflow.python.ops.control_flow_util import GraphOrParentsInXlaContext


class SharedBlock:
    """`shared(i, x, bias, **kwargs)` == `blocks[i](x, bias, **kwargs)`, as a call of one tf.function.

    The values passed are what `blocks[i].variables` read where the call is made: the variables, or
    what an enclosing `keras.StatelessScope` maps them to. One function per static token count of `x`
    (B, T, C), not one for all: TF runs a (B, 1) call through a (B, None) trace if one exists, which
    would lose the one-token paths the attention takes when T is known. Calls made inside an XLA
    function go to their own `jit_compile` function: a plain one there would have its conditionals
    lowered to Switch/Merge by the TF1 session's graph optimizer (TF Serving), which XLA can't compile.
    """

    def __init__(self, blocks):
        self.blocks = list(blocks)
        self.functions = {}

    @staticmethod
    def applies(config):
        """Blocks differ only in their weights unless attention is scaled by the layer index."""
        return not config.scale_attn_by_inverse_layer_idx

    def __call__(self, i, x, bias, **kwargs):
        key = (x.shape[1], GraphOrParentsInXlaContext(tf.compat.v1.get_default_graph()))
        if key not in self.functions:
            self.functions[key] = tf.function(self._run, autograph=False, jit_compile=key[1])
        values = [tf.convert_to_tensor(v.value) for v in self.blocks[i].variables]
        return self.functions[key](values, x, bias, **kwargs)

    def _run(self, values, x, bias, **kwargs):
        block = self.blocks[0]
        with keras.StatelessScope(state_mapping=list(zip(block.variables, values))):
            return block(x, bias, **kwargs)
