"""Training across processes on TensorFlow's distributed runtime: a task's role from the environment (roles.py), the
cluster's servers (cluster.py), a task run by its role (tasks.py), and a whole cluster on this machine
(local_cluster.py)."""
