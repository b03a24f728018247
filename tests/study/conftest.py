"""Fixtures of the study tests: throwaway PostgreSQL and MLflow servers (tests/study/servers.py) and a
single-node SLURM cluster (tests/study/slurm_cluster.py)."""

from tests.study.servers import mlflow_postgres_server, mlflow_server, postgres_url  # noqa: F401 (fixtures)
from tests.study.slurm_cluster import slurm_cluster  # noqa: F401 (a fixture, found by name)
