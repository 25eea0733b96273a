"""End to end: the user guide's examples marked "runs as written" run as written, and print what their comments say.

A comment after a command is (part of) its output: fragments separated by "..." must appear in that order.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from tests.helpers import git, random_model, save_safetensors
from tests.remotes import LocalRemote

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "user-guide.md"
BLOCK = re.compile(r"<!-- runs as written[^>]*-->\n```bash\n(.*?)```", re.DOTALL)
LINE = re.compile(r"^(?P<command>.*?)\s+#\s(?P<said>.*)$")


def examples() -> list[tuple[str, list[str]]]:
    """Each marked command with the fragments of output its comment promises."""
    found = []
    for block in BLOCK.findall(GUIDE.read_text()):
        for line in block.splitlines():
            match = LINE.match(line)
            command, said = (match["command"], match["said"]) if match else (line, "")
            found.append((command.strip(), [part.strip() for part in said.split("...") if part.strip()]))
    return found


def test_marked_examples_run_as_written_in_a_lazy_clone(repo: Path, tmp_path: Path) -> None:
    remote = LocalRemote.create(tmp_path)
    remote.add_to(repo)
    save_safetensors(repo / "a.safetensors", random_model(seed=1))
    git("add", "a.safetensors", cwd=repo)
    git("commit", "-q", "-m", "a model", cwd=repo)
    git("push", "-q", "origin", "main", cwd=repo)
    clone = tmp_path / "clone"
    remote.clone(clone, "-c", "theta.lazy=true")
    git("config", "--unset", "theta.lazy", cwd=clone)  # as after: git config theta.lazy false

    ran = examples()
    assert len(ran) >= 9, ran
    for command, fragments in ran:
        result = subprocess.run(["bash", "-c", command], cwd=clone, capture_output=True, text=True)
        said = result.stdout + result.stderr
        assert result.returncode == 0, (command, said)
        position = 0
        for fragment in fragments:
            found = said.find(fragment, position)
            assert found >= 0, f"{command!r} did not say {fragment!r} (after position {position}):\n{said}"
            position = found + len(fragment)
