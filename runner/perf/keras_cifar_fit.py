"""What a user would pick instead of runner, for ``make bench-compare``: the CIFAR-10 tutorial's model in Keras 3,
trained with ``model.fit`` on a tf.data pipeline with the tutorial's distortions. Prints the steady-state training
examples/sec (batches 10..STEPS).

    [KERAS_POLICY=mixed_bfloat16] python -m runner.perf.keras_cifar_fit DATA_DIR [STEPS]

DATA_DIR holds cifar-10-batches-bin/. LRN runs in float32 (TensorFlow has no bfloat16 LRN kernel on the CPU), as a
mixed-precision user would write it.
"""
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402
from keras import layers  # noqa: E402

B, REC = 128, 1 + 32 * 32 * 3


def parse(value):
    raw = tf.io.decode_raw(value, tf.uint8)
    label = tf.cast(raw[0], tf.int32)
    img = tf.cast(tf.transpose(tf.reshape(raw[1:], [3, 32, 32]), [1, 2, 0]), tf.float32)
    img = tf.image.random_crop(img, [24, 24, 3])
    img = tf.image.random_flip_left_right(img)
    img = tf.image.random_brightness(img, 63)
    img = tf.image.random_contrast(img, 0.2, 1.8)
    return tf.image.per_image_standardization(img), label


def lrn(x):
    return tf.cast(tf.nn.local_response_normalization(tf.cast(x, tf.float32), 4, 1.0, 0.001 / 9.0, 0.75), x.dtype)


class Timer(keras.callbacks.Callback):
    def __init__(self, steps: int):
        super().__init__()
        self.steps = steps

    def on_train_batch_end(self, batch, logs=None):
        if batch == 9:
            self.t = time.time()
        if batch == self.steps - 1:
            self.dt = time.time() - self.t


def main() -> None:
    if os.environ.get("KERAS_POLICY"):
        keras.mixed_precision.set_global_policy(os.environ["KERAS_POLICY"])
    folder = os.path.join(sys.argv[1], "cifar-10-batches-bin")
    steps = int(sys.argv[2]) if len(sys.argv) > 2 else 60
    files = [os.path.join(folder, f"data_batch_{i}.bin") for i in range(1, 6)]
    ds = (tf.data.FixedLengthRecordDataset(files, REC).shuffle(20000).repeat()
          .map(parse, num_parallel_calls=tf.data.AUTOTUNE).batch(B).prefetch(tf.data.AUTOTUNE))
    model = keras.Sequential([
        keras.Input((24, 24, 3)), layers.Conv2D(64, 5, padding="same", activation="relu"),
        layers.MaxPool2D(3, 2, padding="same"), layers.Lambda(lrn),
        layers.Conv2D(64, 5, padding="same", activation="relu"), layers.Lambda(lrn),
        layers.MaxPool2D(3, 2, padding="same"), layers.Flatten(),
        layers.Dense(384, activation="relu"), layers.Dense(192, activation="relu"), layers.Dense(10)])
    model.compile(optimizer=keras.optimizers.SGD(0.1),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    timer = Timer(steps)
    model.fit(ds, steps_per_epoch=steps, epochs=1, verbose=0, callbacks=[timer])
    print(f"keras fit: {(steps - 10) * B / timer.dt:.1f} examples/sec")


if __name__ == "__main__":
    main()
