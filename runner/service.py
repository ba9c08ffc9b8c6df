"""``python -m runner.service``: a role of a tf.data service (a dispatcher, or a worker) on this machine, for runs
whose ``pipeline.service`` is its dispatcher's grpc://HOST:PORT (runner.distributed.data_service)."""
from runner.distributed.data_service import main

if __name__ == "__main__":
    main()
