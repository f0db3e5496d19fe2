"""docs/quickstarts.md is true: every command on the page runs against real sidecars and
prints what the page says.

How the page is read (the page says the same to its readers):
- a ```yaml or ```python block whose first line is `# <path>` is a file, written there;
- a ```sh block of `tandem run` lines starts those sidecars (one per distinct line, shared by
  every section; the page's ports are mapped to free ones);
- a ```sh block with `curl` in it is tried in its section's test, as one bash script with
  `-euo pipefail`; each `#> text` line is text that must appear in its output, in order;
- any other ```sh block is set-up, run before the sidecars start.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from harness import Sidecar, start_sidecar, wait_healthy, wait_until

from tandem.cli.ports import free_port

DOC = Path(__file__).resolve().parents[2] / "docs" / "quickstarts.md"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.M | re.S)
FILE_LINE = re.compile(r"^# (\S+)\n")


@dataclass
class Section:
    title: str
    tries: list[str] = field(default_factory=list)


@dataclass
class Page:
    files: dict[str, str] = field(default_factory=dict)
    setups: list[str] = field(default_factory=list)
    launches: list[str] = field(default_factory=list)
    sections: list[Section] = field(default_factory=list)


def read_page(text: str) -> Page:
    page = Page()
    for chunk in re.split(r"^## ", text, flags=re.M):  # the first: the introduction
        section = Section(chunk.splitlines()[0].strip())
        for lang, body in FENCE.findall(chunk):
            lines = [line for line in body.splitlines() if line.strip()]
            named = FILE_LINE.match(body)
            if lang in ("yaml", "python") and named:
                page.files[named.group(1)] = body
            elif lang != "sh":
                continue
            elif all(line.startswith("tandem run ") for line in lines):
                page.launches += [line for line in lines if line not in page.launches]
            elif "curl " in body:
                section.tries.append(body)
            else:
                page.setups.append(body)
        if section.tries:
            page.sections.append(section)
    return page


PAGE = read_page(DOC.read_text())


def expectations(script: str) -> list[str]:
    return [line[3:] for line in script.splitlines() if line.startswith("#> ")]


def shell_env(home: Path) -> dict[str, str]:
    # The page assumes Tandem's virtual environment is active.
    bin_dir = str(Path(sys.executable).parent)
    return {**os.environ, "TANDEM_HOME": str(home), "PATH": f"{bin_dir}:{os.environ['PATH']}"}


@dataclass
class Mesh:
    work: Path
    home: Path
    ports: dict[str, str]  # the page's port -> the real one
    sidecars: list[Sidecar]

    def localize(self, script: str) -> str:
        """The page's ports become the sidecars' real ones; a port no `tandem run` of the
        page names would reach whatever happens to listen there, so it is an error."""
        unknown = set(re.findall(r"localhost:(\d+)", script)) - set(self.ports)
        assert not unknown, f"the page calls ports no `tandem run` names: {unknown}"
        return re.sub(r"localhost:(\d+)", lambda m: f"localhost:{self.ports[m[1]]}", script)


def launch(line: str, home: Path, work: Path, ports: dict[str, str]) -> Sidecar:
    argv = shlex.split(line)[2:]  # after `tandem run`
    command: list[str] | None = None
    if "--" in argv:
        command, argv = argv[argv.index("--") + 1 :], argv[: argv.index("--")]
    flags = dict(zip(argv[::2], argv[1::2], strict=True))
    app_id, page_http = flags.pop("--app-id"), flags.pop("--dapr-http-port")
    if "--app-port" in flags:
        page_app, real_app = flags["--app-port"], str(free_port())
        flags["--app-port"] = real_app
        command = [real_app if arg == page_app else arg for arg in command or []]
    extra = [part for pair in flags.items() for part in pair]
    sidecar = start_sidecar(
        home, app_id, *extra, command=command, wait=False, cwd=work, env=shell_env(home)
    )
    ports[page_http] = str(sidecar.http_port)
    return sidecar


@pytest.fixture(scope="module")
def mesh(tandem_home: Path, tmp_path_factory: pytest.TempPathFactory):
    work = tmp_path_factory.mktemp("quickstart")
    for name, body in PAGE.files.items():
        (work / name).parent.mkdir(parents=True, exist_ok=True)
        (work / name).write_text(body)
    for script in PAGE.setups:
        subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=work, check=True)
    ports: dict[str, str] = {}
    sidecars = [launch(line, tandem_home, work, ports) for line in PAGE.launches]
    try:
        for sidecar in sidecars:
            wait_healthy(sidecar)
        # A user types the first actor call seconds after the host starts; the test waits
        # for the host's sidecar to report its actor type instead.
        for sidecar in sidecars:
            if sidecar.app_id == "counter":
                wait_until(
                    lambda s=sidecar: "Counter" in httpx.get(f"{s.base}/v1.0/metadata").text,
                    60,
                    "the counter app's actor type",
                )
        yield Mesh(work, tandem_home, ports, sidecars)
    finally:
        for sidecar in sidecars:
            sidecar.stop()


def test_page_covers_every_served_block() -> None:
    titles = {s.title for s in PAGE.sections}
    assert titles >= {
        "Service invocation",
        "State",
        "Pub/sub",
        "Actors",
        "Distributed lock",
        "Jobs",
        "Secrets",
        "Configuration",
        "Bindings",
        "Conversation",
        "Cryptography",
    }


@pytest.mark.parametrize("section", PAGE.sections, ids=lambda s: s.title)
def test_section_prints_what_the_page_says(mesh: Mesh, section: Section) -> None:
    for script in section.tries:
        done = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", mesh.localize(script)],
            cwd=mesh.work,
            env=shell_env(mesh.home),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, f"{script}\n---\n{done.stdout}\n{done.stderr}"
        at = 0
        for expected in expectations(script):
            found = done.stdout.find(expected, at)
            assert found >= 0, f"{expected!r} not in the output of\n{script}\n---\n{done.stdout}"
            at = found + len(expected)
