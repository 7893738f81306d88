"""Real Kafka, schema registry and PostgreSQL for development, tests and benchmarks.

One module provisions and runs the local stack for `make run` (`python -m devstack run`), the
pytest fixtures and the benchmarks, so all three run against the same real components.
"""

from devstack.errors import StackError
from devstack.kafka import Kafka
from devstack.locations import default_cache_dir, default_data_dir
from devstack.maven import fetch_all
from devstack.ports import StackPorts
from devstack.postgres import Postgres
from devstack.registry import Registry
from devstack.service import Service
from devstack.stack import LocalStack

__all__ = [
    "Kafka",
    "LocalStack",
    "Postgres",
    "Registry",
    "Service",
    "StackError",
    "StackPorts",
    "default_cache_dir",
    "default_data_dir",
    "fetch_all",
]
