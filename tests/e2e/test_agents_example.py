"""The multi-agent example (issue 23): `tandem run -f examples/agents` runs the whole
pipeline and exits by itself; the document holds every agent's contribution; with one
research agent killed mid-way, the run still completes (the workflow's retried wait
re-publishes the missing subtask and the other research host takes it)."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from harness import wait_until

from tandem.cli.ports import free_listen_ports

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "agents"
TOPICS = ("history", "methods", "outlook")


def copy_example(tmp_path: Path) -> Path:
    """The example as shipped, in a folder of its own (its report lands there), its three
    app ports moved to other free ones below the random-port range (as the shipped ones
    are), so that a busy machine does not collide with it."""
    where = tmp_path / "agents"
    shutil.copytree(
        EXAMPLE, where, ignore=shutil.ignore_patterns(".dapr", "report.md", "__pycache__")
    )
    template = (where / "dapr.yaml").read_text()
    for old, new in zip(("18311", "18312", "18313"), free_listen_ports(3), strict=True):
        assert old in template
        template = template.replace(old, str(new))
    (where / "dapr.yaml").write_text(template)
    return where


def environment(tandem_home: Path) -> dict[str, str]:
    # The template's commands say `python`: this interpreter, as with an activated venv.
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    return {**os.environ, "TANDEM_HOME": str(tandem_home), "PATH": path}


def start(where: Path, tandem_home: Path, out: Path, **extra: str) -> subprocess.Popen[bytes]:
    with open(out, "wb") as sink:
        return subprocess.Popen(
            [sys.executable, "-m", "tandem.cli.main", "run", "-f", str(where)],
            env={**environment(tandem_home), **extra},
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def finish(run: subprocess.Popen[bytes], out: Path, timeout: float) -> int:
    try:
        return run.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(run.pid, signal.SIGKILL)
        run.wait()
        raise AssertionError(f"the run did not end by itself:\n{out.read_text()[-4000:]}") from None


def assert_complete(report: str) -> None:
    assert "## Plan (orchestrator)" in report, report
    for topic in TOPICS:
        section = re.search(
            rf"## {topic} \(research agent run-\S+-{topic} on researcher-[12]\)", report
        )
        assert section, report
        assert f"Research '{topic}' for the task" in report, report
        assert re.search(
            rf"Follow-up \(reminder on researcher-[12]\): Follow up on: Research '{topic}'", report
        ), report
    assert "## Summary (writer)" in report, report
    assert "Summarise in one paragraph: Follow up on:" in report, report


def test_one_command_runs_the_pipeline_to_its_document(tandem_home, tmp_path):
    where = copy_example(tmp_path)
    out = tmp_path / "run.out"
    run = start(where, tandem_home, out)
    code = finish(run, out, 240)
    text = out.read_text()
    assert code == 0, text[-4000:]
    report = (where / "report.md").read_text()
    assert_complete(report)
    # The orchestrator prints the document as it reads it back from the state store.
    printed = "\n".join(
        line.split("| ", 1)[1] if "| " in line else ""
        for line in text.splitlines()
        if line.startswith("orchestrator ")
    )
    assert report.strip() in printed, text[-4000:]
    for app in ("orchestrator", "researcher-1", "researcher-2", "writer"):
        assert f"{app} exited with code 0" in text, text[-4000:]


def app_pid(app_id: str) -> int | None:
    """The pid of the `python researcher.py` that runs as ``app_id``."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
            env = (proc / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"researcher.py" in argv and f"APP_ID={app_id}".encode() in env:
            return int(proc.name)
    return None


def test_the_run_completes_with_a_research_agent_killed_mid_way(tandem_home, tmp_path):
    where = copy_example(tmp_path)
    out = tmp_path / "run.out"
    run = start(where, tandem_home, out)
    drafted = re.compile(r"\[(researcher-[12])\] run-\S+-(\w+): drafted")
    try:
        # Kill the first researcher that drafts, within its follow-up's 1 s.
        first = wait_until(
            lambda: drafted.search(out.read_text()), 120, "a research agent to draft", 0.02
        )
        victim, topic = first.group(1), first.group(2)
        pid = app_pid(victim)
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
    except BaseException:
        os.killpg(run.pid, signal.SIGKILL)
        run.wait()
        raise
    code = finish(run, out, 240)
    text = out.read_text()
    survivor = "researcher-2" if victim == "researcher-1" else "researcher-1"
    # The run's code is the killed app's; every other agent finished its part and left.
    assert code != 0
    for app in ("orchestrator", survivor, "writer"):
        assert f"{app} exited with code 0" in text, text[-4000:]
    report = (where / "report.md").read_text()
    assert_complete(report)
    # The killed agent's thread was done again by the other one.
    assert f"Follow-up (reminder on {survivor}): Follow up on: Research '{topic}'" in report


def test_a_writer_that_keeps_failing_runs_the_compensation_step(tandem_home, tmp_path):
    where = copy_example(tmp_path)
    out = tmp_path / "run.out"
    run = start(where, tandem_home, out, WRITER_FAILS="1")
    code = finish(run, out, 240)
    text = out.read_text()
    # Three tries of the writer (its retry policy), then the compensation, then a failed run.
    assert code == 1, text[-4000:]
    assert "[orchestrator] compensation: intermediate results retracted" in text, text[-4000:]
    assert "did not complete: pipeline failed, results retracted" in text, text[-4000:]
    assert not (where / "report.md").exists()
    for app in ("researcher-1", "researcher-2", "writer"):
        assert f"{app} exited with code 0" in text, text[-4000:]
