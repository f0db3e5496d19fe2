"""The writer agent: called by service invocation (POST /write) with the plan and every
research result, it asks the model for a summary and assembles the final document, written
to $REPORT_PATH (default report.md in this folder) and to the state store."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import uvicorn
from agentlib import ask, save, say
from fastapi import FastAPI

app = FastAPI()
server: uvicorn.Server | None = None


@app.get("/ready")
def ready() -> dict[str, bool]:
    return {"ready": True}


@app.post("/write")
def write(job: dict[str, Any]) -> dict[str, Any]:
    run, task = job["run"], job["task"]
    if os.environ.get("WRITER_FAILS"):  # to see the workflow's compensation step run
        raise RuntimeError("the writer is told to fail")
    sections = sorted(job["sections"], key=lambda s: s["topic"])
    summary = ask("Summarise in one paragraph: " + " ".join(s["followup"] for s in sections))
    lines = [f"# {task}", "", f"Run `{run}`.", "", "## Plan (orchestrator)", ""]
    lines += [f"- {topic}" for topic in job["plan"]]
    for s in sections:
        lines += ["", f"## {s['topic']} (research agent {s['actor']} on {s['host']})", ""]
        lines += [s["draft"], "", f"Follow-up (reminder on {s['followup_host']}): {s['followup']}"]
    lines += ["", "## Summary (writer)", "", summary, ""]
    document = "\n".join(lines)
    path = Path(os.environ.get("REPORT_PATH", "report.md")).resolve()
    path.write_text(document)
    save(f"{run}/report", document)
    say(f"wrote {path} ({len(document)} characters)")
    return {"path": str(path), "characters": len(document)}


@app.post("/stop")
async def stop() -> dict[str, bool]:
    """The orchestrator is done: leave, which also stops this app's sidecar."""
    if server is not None:
        server.should_exit = True
    return {"stopping": True}


if __name__ == "__main__":
    config = uvicorn.Config(
        app, host="127.0.0.1", port=int(os.environ["APP_PORT"]), log_level="warning"
    )
    server = uvicorn.Server(config)
    server.run()
