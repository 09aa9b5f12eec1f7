"""The multi-worker cluster, read once for both backends: ``TF_CONFIG`` (the same variable on
TensorFlow's ``MultiWorkerMirroredStrategy`` and on JAX's multi-process training), validated here
without importing either framework.

Example for two hosts, the first of which is the chief (worker 0, which writes checkpoints; on JAX
its address is also the coordinator's)::

    TF_CONFIG='{"cluster": {"worker": ["host1:12345", "host2:12345"]}, "task": {"type": "worker", "index": 0}}'
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

from kerasrecon.errors import ConfigError

EXAMPLE = '{"cluster": {"worker": ["h1:12345", "h2:12345"]}, "task": {"type": "worker", "index": 0}}'


@dataclass(frozen=True)
class Cluster:
    """This process's place in the cluster: ``members`` (``host:port`` of every worker of its task
    type, in order), ``task_type`` and ``index`` (0 is the chief)."""

    members: tuple
    task_type: str
    index: int

    @property
    def coordinator(self) -> str:
        """``host:port`` of the first member (JAX's coordination service runs there)."""
        return self.members[0]


def tf_config() -> Cluster | None:
    """The cluster from ``TF_CONFIG``, or ``None`` when it is unset or empty.

    Raises:
        ConfigError: malformed JSON, a missing key, or an index outside the member list (one line).
    """
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        return None
    try:
        conf = json.loads(raw)
        cluster, task = conf["cluster"], conf["task"]
        members = cluster[task["type"]]
        index = int(task["index"])
        if not isinstance(members, list) or not all(isinstance(m, str) and ":" in m for m in members):
            raise ValueError(f"cluster[{task['type']!r}] must be a list of 'host:port' strings")
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise ConfigError(
            f"TF_CONFIG is malformed ({exc.__class__.__name__}: {exc}); expected "
            '{"cluster": {"worker": [...]}, "task": {"type": "worker", "index": i}}'
        ) from None
    if not 0 <= index < len(members):
        raise ConfigError(f"TF_CONFIG task index {index} is outside cluster[{task['type']!r}] of {len(members)}")
    return Cluster(tuple(members), str(task["type"]), index)
