"""Encoded images (JPEG, PNG, BMP, GIF) to fixed-size uint8 arrays, in the graph: shared by ``image_folder`` and by
``tfrecord`` with ``image_format=encoded``."""
from __future__ import annotations


def decode_images(contents, height: int, width: int, channels: int, fit: str):
    """TF, batched: encoded images [B] -> uint8 [B, height, width, channels]. ``channels`` converts (grey <-> RGB,
    alpha dropped); ``fit=resize`` scales to the size (antialiased, aspect not kept), ``center_crop`` crops the
    centre (padding with zeros where the image is smaller)."""
    import tensorflow as tf

    def one(encoded):
        image = tf.io.decode_image(encoded, channels=channels, expand_animations=False)
        image.set_shape([None, None, channels])
        if fit == "center_crop":
            return tf.image.resize_with_crop_or_pad(image, height, width)

        def resize():
            resized = tf.image.resize(image, [height, width], antialias=True)
            return tf.cast(tf.clip_by_value(tf.round(resized), 0.0, 255.0), tf.uint8)

        size = tf.shape(image)[:2]
        fits = tf.logical_and(tf.equal(size[0], height), tf.equal(size[1], width))
        return tf.cond(fits, lambda: image, resize)  # images of the size already are used as they are

    return tf.map_fn(one, contents, fn_output_signature=tf.TensorSpec([height, width, channels], tf.uint8))


def parse_encoded(serialized, image_key: str, label_key: str):
    """A batch [B] of serialized Examples -> (encoded image bytes [B], int32 labels [B])."""
    import tensorflow as tf

    parsed = tf.io.parse_example(serialized, {image_key: tf.io.FixedLenFeature([], tf.string),
                                              label_key: tf.io.FixedLenFeature([], tf.int64)})
    return parsed[image_key], tf.cast(parsed[label_key], tf.int32)
