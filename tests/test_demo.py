"""Issue 15, item 14: ``make demo`` asks its own server on its own port, and fails when that server is not
the one answering (tools/demo_recommend.py, with stand-ins for ``serve`` and ``recommend``)."""

from __future__ import annotations

import sys
from pathlib import Path

from tools.demo_recommend import run_demo

# A stand-in for `tfrec-xcat serve`: prints its serving line for the port it was given (or for PORT_SHOWN),
# then stays up until terminated.
SERVE = """
import sys, time
args = dict(zip(sys.argv[1::2], sys.argv[2::2]))
port = {port_shown} or args["--rest-port"]
print(f"serving xcat_retrieval from m: REST http://{{args['--host']}}:{{port}}, gRPC x", flush=True)
time.sleep(60)
"""
# A stand-in for `tfrec-xcat recommend`: records the server it was pointed at.
RECOMMEND = "import sys; open(sys.argv[1], 'w').write(sys.argv[-1])"


def _serve(tmp_path: Path, port_shown: int = 0) -> list[str]:
    script = tmp_path / "serve.py"
    script.write_text(SERVE.format(port_shown=port_shown))
    return [sys.executable, str(script)]


def test_asks_its_own_server_on_a_free_port(tmp_path: Path) -> None:
    asked = tmp_path / "asked"
    status = run_demo(_serve(tmp_path), [sys.executable, "-c", RECOMMEND, str(asked)], timeout=30)
    assert status == 0
    server = asked.read_text()
    assert server.startswith("http://127.0.0.1:") and not server.endswith((":8501", ":8500"))


def test_fails_when_its_server_exits(tmp_path: Path) -> None:
    asked = tmp_path / "asked"
    serve = [sys.executable, "-c", "import sys; sys.exit(2)"]  # e.g. its port was taken
    assert run_demo(serve, [sys.executable, "-c", RECOMMEND, str(asked)], timeout=30) == 1
    assert not asked.exists()


def test_fails_when_another_server_is_the_one_announced(tmp_path: Path) -> None:
    asked = tmp_path / "asked"
    assert run_demo(_serve(tmp_path, port_shown=8501), [sys.executable, "-c", RECOMMEND, str(asked)], timeout=3) == 1
    assert not asked.exists()


def test_recommend_failure_is_the_demo_failure(tmp_path: Path) -> None:
    assert run_demo(_serve(tmp_path), [sys.executable, "-c", "import sys; sys.exit(2)"], timeout=30) == 2
