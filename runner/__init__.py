"""runner: a declarative experiment runner for TensorFlow input pipelines and training setups."""

import os

# oneDNN's CPU kernels (fused convolutions, matmuls, pooling), which TensorFlow leaves off unless asked; measured
# 1.57x on the CIFAR-10 model's train step on this project's 2-core CPU. Read when TensorFlow loads;
# TF_ENABLE_ONEDNN_OPTS=0 turns them off (results then differ in the last bits of float round-off).
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
