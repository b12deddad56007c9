"""Losses with HF semantics: shifted LM loss ignoring -100, mean over real tokens."""

import tensorflow as tf

IGNORE_INDEX = -100


def labels_from_inputs(input_ids, attention_mask=None):
    """LM labels for plain text: the ids themselves, pads (mask 0) set to -100."""
    labels = tf.cast(input_ids, tf.int32)
    if attention_mask is not None:
        labels = tf.where(tf.cast(attention_mask, tf.bool), labels, IGNORE_INDEX)
    return labels


def lm_loss(logits, labels):
    """Next-token cross-entropy: logits (..., T, V) vs labels (..., T) shifted by one.

    The labels move, not the logits: position t is scored against label t + 1 and the last position
    against nothing, so no (..., T - 1, V) copy of the logits is made (nor its padded gradient)."""
    logits = tf.cast(logits, tf.float32)  # (..., T, V)
    labels = tf.cast(labels, tf.int32)
    targets = tf.concat([labels[..., 1:], tf.fill(tf.shape(labels[..., :1]), IGNORE_INDEX)], -1)  # (..., T)
    valid = tf.not_equal(targets, IGNORE_INDEX)
    per_token = tf.nn.sparse_softmax_cross_entropy_with_logits(
        labels=tf.where(valid, targets, 0), logits=logits)
    per_token = tf.where(valid, per_token, 0.0)
    count = tf.reduce_sum(tf.cast(valid, tf.float32))
    return tf.math.divide_no_nan(tf.reduce_sum(per_token), count)


def classification_loss(logits, labels, regression=False):
    """Mean cross-entropy over int labels, or mean squared error (HF regression, one output)."""
    logits = tf.cast(logits, tf.float32)
    if regression:
        return tf.reduce_mean(tf.square(tf.squeeze(logits, -1) - tf.cast(labels, tf.float32)))
    return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
        labels=tf.cast(labels, tf.int32), logits=logits))
