"""Put on PYTHONPATH to make the modules named in BLOCK_MODULES (comma-separated; default tensorflow)
unimportable in a child process: a GPU host without them, simulated on this machine."""

import os
import sys

_BLOCKED = tuple(m for m in os.environ.get("BLOCK_MODULES", "tensorflow").split(",") if m)


class _Block:
    def find_spec(self, name, path=None, target=None):
        if any(name == m or name.startswith(m + ".") for m in _BLOCKED):
            raise ModuleNotFoundError(f"No module named '{name}' (blocked)", name=name)
        return None


sys.meta_path.insert(0, _Block())
