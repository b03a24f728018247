"""Fixtures of the study tests: throwaway PostgreSQL and MLflow servers (tests/study/servers.py), a
single-node SLURM cluster (tests/study/slurm_cluster.py) and hand-made machine rates for `ablate`'s estimate."""

import os
from collections.abc import Iterator

import pytest

from calo_ablate.config import DATASET_ALIASES
from calo_ablate.runs.rates import RATES_ENV, FamilyRates, MachineKey, MachineRates, RatesCache
from tests.study.servers import mlflow_postgres_server, mlflow_server, postgres_url  # noqa: F401 (fixtures)
from tests.study.slurm_cluster import slurm_cluster  # noqa: F401 (a fixture, found by name)

FAMILIES = ("caloscore_v2", "calodiffusion", "caloflow")


@pytest.fixture(scope="session", autouse=True)
def machine_rates(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """`ablate`'s estimate reads hand-made rates of every family for the thread counts 1 to 4 workers get here,
    so that no study test measures this machine (commands/estimate.py; tests/bench/test_rates.py measures).
    Session-wide, so that the module-scoped studies see it too."""
    path = tmp_path_factory.mktemp("rates") / "machine-rates.json"
    cache = RatesCache(path, read=False)
    family = FamilyRates(train_seconds_per_shower=0.03, train_gflop_per_shower=1.7, gen_seconds_per_shower=4.5,
                         gen_gflop_per_shower=275.0, sampling_steps=512)
    for threads in {max(1, (os.cpu_count() or 1) // workers) for workers in range(1, 5)}:
        cache.put(MachineRates(MachineKey.here(threads), "2026-12-07 00:00 UTC", "cpu", 90.0,
                               {f"{f}/{d}": family for f in FAMILIES for d in set(DATASET_ALIASES.values())}))
    cache.write()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(RATES_ENV, str(path))
        yield
