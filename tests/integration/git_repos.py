"""Real git repositories made in a test, reached by file:// URLs (deployment sources)."""

from __future__ import annotations

import subprocess
from pathlib import Path


class Repo:
    """A real git repository under tmp_path, reached by a file:// URL."""

    def __init__(self, path: Path):
        self.path = path
        path.mkdir(parents=True)
        self.git("init", "-q", "-b", "main")

    @property
    def url(self) -> str:
        return f"file://{self.path}"

    def git(self, *args: str) -> str:
        done = subprocess.run(
            ["git", "-C", str(self.path), "-c", "user.email=t@t", "-c", "user.name=t", *args],
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        )
        return done.stdout.strip()

    def commit(self, message: str, files: dict[str, str], remove: tuple[str, ...] = ()) -> str:
        for name in remove:
            (self.path / name).unlink()
        for name, text in files.items():
            (self.path / name).parent.mkdir(parents=True, exist_ok=True)
            (self.path / name).write_text(text)
        self.git("add", "-A")
        self.git("commit", "-q", "-m", message)
        return self.git("rev-parse", "HEAD")
