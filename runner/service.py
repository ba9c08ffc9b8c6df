"""``python -m runner.service``: a role of a tf.data service (a dispatcher, or a worker) on this machine, or each
task of a SLURM job step, for runs whose ``pipeline.service`` is its dispatcher's grpc://HOST:PORT
(runner.distributed.service_roles)."""
from runner.distributed.service_roles import main

if __name__ == "__main__":
    main()
