"""The landing page's quickstart, taken from docs/index.md as a reader reads it and run in bash.

``python -m tests.docs.quickstart`` is CI's leg "from the wheel": a fresh virtualenv, the page's own
install-from-a-clone lines (``pip install "$(ls dist/*.whl)[sandbox]"``, with a clean Airflow resolved by
pip), then the quickstart exactly as shown; tests/docs/test_quickstart.py runs the same quickstart in
the development virtualenv. Both end green with 200 ``sent``, then 200 ``already_fulfilled``.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PAGE = REPO / "docs" / "index.md"
FENCE = re.compile(r"^```(\S*)[^\n]*\n(.*?)^```", re.DOTALL | re.MULTILINE)
SECRET = "sk_test_demo"


def section(title: str) -> str:
    text = PAGE.read_text()
    start = text.index(f"## {title}")
    end = text.find("\n## ", start + 1)
    return text[start : end if end > 0 else len(text)]


def quickstart_script(home: Path, port: int) -> str:
    """The quickstart's shell blocks, the DAG file saved where the page says, then a second run."""
    text = section("A working DAG in five minutes")
    blocks = FENCE.findall(text)
    shell = [code for lang, code in blocks if lang == "bash"]
    dag = next(code for lang, code in blocks if lang == "python")
    saved_as = re.search(r"Save this as `([^`]+)`", text)
    assert len(shell) == 2 and saved_as, "the page's quickstart: setup, the DAG file, then the run"
    setup = shell[0].replace("~/airflow", shlex.quote(str(home)))
    assert setup != shell[0], "the page sets AIRFLOW_HOME=~/airflow"
    run = shell[1].replace("8765", str(port))
    return (
        "set -euo pipefail\n"
        "trap 'kill $(jobs -p) 2>/dev/null || true' EXIT\n"
        + setup
        + f"cat > \"{saved_as.group(1)}\" <<'JUSPAY_DAG_EOF'\n{dag}JUSPAY_DAG_EOF\n"
        + run
        + "echo RUN AGAIN\n"
        + "airflow dags test juspay_bulk_from_xcom\n"
    )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def check(output: str) -> list[str]:
    """What the page promises, as problems found (empty when kept)."""
    problems = []
    if "RUN AGAIN" not in output:
        return ["the first run did not finish"]
    first, again = output.split("RUN AGAIN", 1)
    if not re.search(r"\bsent\s+200\b", first):
        problems.append("the first run's report does not say 200 sent")
    if not re.search(r"\balready_fulfilled\s+200\b", again):
        problems.append("the second run's report does not say 200 already_fulfilled")
    if "state=success" not in again:
        problems.append("the second run did not succeed")
    if SECRET in output:
        problems.append("the API key is in the output")
    return problems


def run_quickstart(bin_dir: Path, workdir: Path, env: dict[str, str] | None = None) -> tuple[int, str]:
    """Run the page's quickstart with ``bin_dir`` first on PATH (the reader's virtualenv), in
    ``workdir`` (not the clone: ``python -m`` must find the installed package, not the sources)."""
    home = workdir / "airflow"
    script = quickstart_script(home, free_port())
    environment = {k: v for k, v in (env or os.environ).items() if not k.startswith("AIRFLOW")}
    environment["PATH"] = f"{bin_dir}{os.pathsep}{environment.get('PATH', '')}"
    environment.pop("PYTHONPATH", None)
    done = subprocess.run(
        ["bash", "-c", script],
        cwd=workdir,
        env=environment,
        capture_output=True,
        text=True,
        timeout=600,
    )
    return done.returncode, done.stdout + done.stderr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", default="python3", help="the interpreter of the fresh virtualenv")
    args = parser.parse_args()
    install = FENCE.findall(section("Install"))
    wheel_block = next(code for lang, code in install if lang == "bash" and "dist/*.whl" in code)
    pip_line = next(line for line in wheel_block.splitlines() if line.startswith("pip install"))
    if not list((REPO / "dist").glob("*.whl")):
        sys.exit("no wheel in dist/: run `make dist` first")
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="juspay-wheel-") as tmp:
        venv = Path(tmp) / "venv"
        print(f"a fresh virtualenv in {venv} ({args.python})", flush=True)
        subprocess.run([args.python, "-m", "venv", str(venv)], check=True)
        subprocess.run(
            [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--upgrade", "pip"], check=True
        )
        print(f"$ {pip_line}    (the page's line, in the clone)", flush=True)
        path = f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}"
        subprocess.run(["bash", "-c", pip_line.replace("pip install", "pip install -q", 1)], cwd=REPO,
                       env={**os.environ, "PATH": path}, check=True)  # fmt: skip
        versions = subprocess.run(
            [str(venv / "bin" / "python"), "-c",
             "import airflow, airflow_provider_juspay as p; print('Airflow', airflow.__version__, "
             "'and the provider', p.__version__, 'from', p.__file__)"],
            capture_output=True, text=True, check=True, cwd=tmp,
        ).stdout.strip()  # fmt: skip
        print(versions, flush=True)
        assert "site-packages" in versions, "the provider must come from the wheel, not the clone"
        code, output = run_quickstart(venv / "bin", Path(tmp))
    problems = check(output) + ([f"exit code {code}"] if code else [])
    if problems:
        print(output[-6000:])
        sys.exit("the quickstart from the wheel failed: " + "; ".join(problems))
    print(
        "the quickstart from the wheel: 200 sent, then 200 already_fulfilled "
        f"({time.monotonic() - started:.0f}s)"
    )


if __name__ == "__main__":
    main()
