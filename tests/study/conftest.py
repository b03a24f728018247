"""Fixtures of the study tests: throwaway PostgreSQL and MLflow servers (tests/study/servers.py)."""

from tests.study.servers import mlflow_server, postgres_url  # noqa: F401 (fixtures, found by name)
