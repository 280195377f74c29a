"""An environment that remembers which variables were asked of it (Settings.from_env's reads)."""

from __future__ import annotations


class ReadRecorder(dict):
    """An empty environment (or a given one) that records every name read through get, [] or in."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.read: set[str] = set()

    def get(self, key, default=None):  # type: ignore[override]
        self.read.add(key)
        return super().get(key, default)

    def __getitem__(self, key):
        self.read.add(key)
        return super().__getitem__(key)

    def __contains__(self, key) -> bool:
        self.read.add(key)
        return super().__contains__(key)
