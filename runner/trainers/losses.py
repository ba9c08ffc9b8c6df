"""The training loss: mean softmax cross-entropy plus the regularization losses the model registered."""
from __future__ import annotations

import tensorflow as tf

from runner.ops.summaries import LOSS_TERMS

v1 = tf.compat.v1


def total_loss(logits: tf.Tensor, labels: tf.Tensor, scope: str | None = None) -> tf.Tensor:
    """Cross-entropy + weight decay (REGULARIZATION_LOSSES created under ``scope``, all if None). The terms go to
    the LOSS_TERMS collection, for their summaries."""
    xent = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits),
                          name="cross_entropy")
    decay = v1.get_collection(v1.GraphKeys.REGULARIZATION_LOSSES, scope)
    for term in [xent, *decay]:
        v1.add_to_collection(LOSS_TERMS, term)
    return tf.add_n([xent, *decay], name="total_loss") if decay else xent
