"""A real ComfyUI server for tests, and a small client for its HTTP + websocket API.

Usage (the `comfy_server` fixture in tests/conftest.py does the first part once per session):

    server = ComfyServer(comfy_dir, workdir, custom_nodes={PACK_NAME: REPO_DIR, "testing_pack": TESTING_PACK})
    server.start()                      # free port, waits for /system_stats, raises with the log on failure
    client = server.client()
    info = client.object_info("MotionI2VPreviewMotion")
    result = client.run(api_prompt, timeout=120)   # POST /prompt, collect websocket events until done
    assert result.ok, result.describe()           # .status "success" | "error" | "interrupted"
    result.outputs["9"]["images"]; result.progress_for("5"); result.error["exception_message"]
    result.previews_for("5")            # JPEG/PNG bytes of the live previews sent while node 5 ran
    client.run(prompt, on_event=lambda r, ev: client.interrupt() if ev["type"] == "progress" else None)
    server.stop()

`client.queue(prompt)` raises PromptRejected (with .body, the server's JSON) when validation fails
(HTTP 400). `server.log_text()` returns the server's log; `server.models_dir` is the folder mounted
as the models base (motion_i2v/, checkpoints/ ... beneath it), `server.input_dir`/`output_dir` the
ComfyUI input and output folders. `server.url` is e.g. "http://127.0.0.1:40123".

The server runs `main.py` through scripts/launch_comfyui.py (torchvision shim), with `--cpu
--disable-api-nodes` and every directory in a temporary `workdir`, so tests never touch the user's
ComfyUI folders. Packs are mounted by symlink through an extra_model_paths YAML (`custom_nodes:`).
Needs aiohttp for the websocket (ComfyUI itself depends on it).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

REPO_DIR = Path(__file__).resolve().parents[2]
LAUNCHER = REPO_DIR / "scripts" / "launch_comfyui.py"
PREVIEW_IMAGE = 1  # ComfyUI's BinaryEventTypes.PREVIEW_IMAGE: 4-byte format (1 JPEG, 2 PNG), then the image
PACK_NAME = "comfyui-motion-i2v"  # folder name the pack is mounted under (as scripts/run_comfyui.sh does)


def default_comfyui_dir() -> Path:
    """Where scripts/setup_env.sh puts ComfyUI (MI2V_COMFYUI_DIR overrides, as in the scripts)."""
    if os.environ.get("MI2V_COMFYUI_DIR"):
        return Path(os.environ["MI2V_COMFYUI_DIR"])
    cache = Path(os.environ.get("MI2V_CACHE", Path.home() / ".cache" / "motion-i2v"))
    return cache / "ComfyUI"


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require_comfyui() -> Path:
    """The ComfyUI folder; without one the calling test is skipped, except in CI, where it fails."""
    import pytest

    comfy_dir = default_comfyui_dir()
    if not (comfy_dir / "main.py").is_file():
        message = f"no ComfyUI backend at {comfy_dir}; run scripts/setup_env.sh (or set MI2V_COMFYUI_DIR)"
        if in_ci():
            pytest.fail(message)
        pytest.skip(message)
    return comfy_dir


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerError(RuntimeError):
    pass


class PromptRejected(RuntimeError):
    """POST /prompt answered 400: the prompt failed validation. `.body` is the server's JSON answer."""

    def __init__(self, body: dict):
        self.body = body
        error = body.get("error", {})
        details = "; ".join(
            f"node {nid} ({ne.get('class_type')}): "
            + "; ".join(f"{e.get('message', '')}: {e.get('details', '')}" for e in ne.get("errors", []))
            for nid, ne in body.get("node_errors", {}).items()
        )
        super().__init__(f"prompt rejected: {error.get('message', body)} {details}".strip())


@dataclass
class RunResult:
    """Everything the websocket said about one prompt, plus its /history entry."""

    prompt_id: str
    status: str = "pending"  # success | error | interrupted | timeout
    events: list[dict] = field(default_factory=list)
    executed: dict[str, Any] = field(default_factory=dict)  # node id -> ui output
    ran: list[str] = field(default_factory=list)  # node ids in execution order
    cached: list[str] = field(default_factory=list)
    error: Optional[dict] = None  # execution_error data
    history: Optional[dict] = None
    seconds: float = 0.0
    # Binary preview frames, as (node id executing when it arrived, event type, payload after the type).
    # They carry no prompt id: only frames received while this prompt was running are kept.
    previews: list[tuple[Optional[str], int, bytes]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status == "success"

    @property
    def outputs(self) -> dict:
        return (self.history or {}).get("outputs", self.executed)

    def progress_for(self, node_id: str) -> list[tuple[int, int]]:
        """(value, max) of every progress event sent for one node."""
        return [
            (e["data"]["value"], e["data"]["max"])
            for e in self.events
            if e["type"] == "progress" and str(e["data"].get("node")) == str(node_id)
        ]

    def previews_for(self, node_id: str) -> list[bytes]:
        """The image bytes (JPEG or PNG) of every PREVIEW_IMAGE frame sent while one node ran."""
        return [payload[4:] for node, kind, payload in self.previews if node == str(node_id) and kind == PREVIEW_IMAGE]

    def did_run(self, node_id: str) -> bool:
        return str(node_id) in self.ran

    def describe(self) -> str:
        if self.error:
            e = self.error
            return (
                f"{self.status}: node {e.get('node_id')} ({e.get('node_type')}): "
                f"{e.get('exception_type')}: {e.get('exception_message')}\n" + "".join(e.get("traceback", []))[-3000:]
            )
        return f"{self.status}; ran {self.ran}; events {[e['type'] for e in self.events][-12:]}"


class ComfyClient:
    def __init__(self, url: str, client_id: Optional[str] = None):
        self.url = url.rstrip("/")
        self.client_id = client_id or uuid.uuid4().hex

    # --- plain HTTP -------------------------------------------------------------------------
    def get_json(self, path: str, timeout: float = 30):
        with urllib.request.urlopen(self.url + path, timeout=timeout) as r:
            return json.loads(r.read())

    def post_json(self, path: str, body: Optional[dict] = None, timeout: float = 30):
        data = json.dumps(body or {}).encode()
        req = urllib.request.Request(self.url + path, data=data, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=timeout) as r:
            raw = r.read()
        return json.loads(raw) if raw.strip() else None

    def object_info(self, node_class: Optional[str] = None) -> dict:
        if node_class is None:
            return self.get_json("/object_info", timeout=60)
        return self.get_json(f"/object_info/{node_class}")[node_class]

    def system_stats(self) -> dict:
        return self.get_json("/system_stats")

    def history(self, prompt_id: str) -> Optional[dict]:
        return self.get_json(f"/history/{prompt_id}").get(prompt_id)

    def interrupt(self) -> None:
        self.post_json("/interrupt")

    def queue(self, prompt: dict) -> str:
        """POST /prompt; returns the prompt id or raises PromptRejected."""
        try:
            answer = self.post_json("/prompt", {"prompt": prompt, "client_id": self.client_id})
        except urllib.error.HTTPError as e:
            body = e.read()
            try:
                parsed = json.loads(body)
            except ValueError:
                parsed = {"error": {"message": body.decode(errors="replace")}}
            if e.code == 400:
                raise PromptRejected(parsed) from None
            raise
        return answer["prompt_id"]

    # --- a whole run over the websocket -----------------------------------------------------
    def run(
        self,
        prompt: dict,
        timeout: float = 300,
        on_event: Optional[Callable[[RunResult, dict], None]] = None,
    ) -> RunResult:
        """Queue `prompt` and collect its websocket events until it finishes (or `timeout` s pass).

        The websocket connects before the prompt is queued, so no event is missed.
        `on_event(result, event)` is called for every event of this prompt (e.g. to interrupt).
        """
        return asyncio.run(self._run(prompt, timeout, on_event))

    async def _run(self, prompt, timeout, on_event) -> RunResult:
        import aiohttp

        ws_url = self.url.replace("http", "ws", 1) + f"/ws?clientId={self.client_id}"
        t0 = time.monotonic()
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(ws_url, heartbeat=30) as ws:
                prompt_id = await asyncio.to_thread(self.queue, prompt)
                result = RunResult(prompt_id)
                deadline = t0 + timeout
                while result.status == "pending":
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        result.status = "timeout"
                        break
                    try:
                        msg = await ws.receive(timeout=remaining)
                    except asyncio.TimeoutError:
                        result.status = "timeout"
                        break
                    if msg.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
                        raise ServerError(f"websocket closed while waiting for prompt {prompt_id}")
                    if msg.type == aiohttp.WSMsgType.BINARY:
                        if result.ran and len(msg.data) >= 4:  # preview images: 4-byte big-endian type, payload
                            kind = int.from_bytes(msg.data[:4], "big")
                            result.previews.append((result.ran[-1], kind, bytes(msg.data[4:])))
                        continue
                    if msg.type != aiohttp.WSMsgType.TEXT:
                        continue
                    event = json.loads(msg.data)
                    data = event.get("data") or {}
                    if data.get("prompt_id") != prompt_id:
                        continue  # status broadcasts and other clients' prompts
                    result.events.append(event)
                    self._record(result, event)
                    if on_event is not None:
                        await asyncio.to_thread(on_event, result, event)
        result.seconds = time.monotonic() - t0
        if result.status != "timeout":
            result.history = self.history(prompt_id)
        return result

    @staticmethod
    def _record(result: RunResult, event: dict) -> None:
        kind, data = event["type"], event.get("data") or {}
        if kind == "executing":
            if data.get("node") is None:
                if result.status == "pending":
                    result.status = "success"
            else:
                result.ran.append(str(data["node"]))
        elif kind == "execution_cached":
            result.cached.extend(str(n) for n in data.get("nodes", []))
        elif kind == "executed":
            result.executed[str(data["node"])] = data.get("output")
        elif kind == "execution_success":
            result.status = "success"
        elif kind == "execution_error":
            result.status, result.error = "error", data
        elif kind == "execution_interrupted":
            result.status = "interrupted"


class ComfyServer:
    """One ComfyUI process with the given packs mounted; every directory lives under `workdir`."""

    def __init__(
        self,
        comfy_dir: Path,
        workdir: Path,
        custom_nodes: dict[str, Path] | list[Path] = (),
        python: str = sys.executable,
        startup_timeout: float = 180,
        extra_args: list[str] = (),
    ):
        self.comfy_dir = Path(comfy_dir)
        self.workdir = Path(workdir)
        if not isinstance(custom_nodes, dict):
            custom_nodes = {Path(p).name: p for p in custom_nodes}
        self.custom_nodes = {name: Path(p) for name, p in custom_nodes.items()}  # folder name -> pack dir
        self.python = python
        self.startup_timeout = startup_timeout
        self.extra_args = list(extra_args)
        self.port: Optional[int] = None
        self.proc: Optional[subprocess.Popen] = None
        self.models_dir = self.workdir / "models"
        self.input_dir = self.workdir / "input"
        self.output_dir = self.workdir / "output"
        self.user_dir = self.workdir / "user"
        self.log_path = self.workdir / "comfyui.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self) -> ComfyClient:
        return ComfyClient(self.url)

    def _write_config(self) -> Path:
        mount = self.workdir / "custom_nodes"
        mount.mkdir(parents=True, exist_ok=True)
        for name, pack in self.custom_nodes.items():
            link = mount / name
            if not link.exists():
                link.symlink_to(pack.resolve(), target_is_directory=True)
        for d in (self.models_dir / "motion_i2v", self.models_dir / "checkpoints", self.input_dir,
                  self.output_dir, self.user_dir, self.workdir / "temp"):
            d.mkdir(parents=True, exist_ok=True)
        yaml = self.workdir / "extra_model_paths.yaml"
        # Test models only: the default ComfyUI models folders are not searched for motion_i2v files.
        kinds = ("motion_i2v", "checkpoints", "loras", "vae", "clip", "text_encoders", "diffusion_models")
        lines = ["test_packs:", f"    base_path: {mount}", "    custom_nodes: .",
                 "test_models:", f"    base_path: {self.models_dir}"]
        lines += [f"    {k}: {k}" for k in kinds]
        yaml.write_text("\n".join(lines) + "\n")
        return yaml

    def start(self) -> "ComfyServer":
        if not (self.comfy_dir / "main.py").is_file():
            raise ServerError(f"no ComfyUI at {self.comfy_dir} (run scripts/setup_env.sh)")
        yaml = self._write_config()
        self.port = free_port()
        cmd = [
            self.python, str(LAUNCHER), str(self.comfy_dir),
            "--cpu", "--listen", "127.0.0.1", "--port", str(self.port), "--disable-api-nodes",
            "--extra-model-paths-config", str(yaml),
            "--output-directory", str(self.output_dir), "--input-directory", str(self.input_dir),
            "--user-directory", str(self.user_dir), "--temp-directory", str(self.workdir / "temp"),
            "--database-url", "sqlite:///:memory:",
            *self.extra_args,
        ]
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        client = self.client()
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ServerError(f"ComfyUI exited with code {self.proc.returncode} during start-up:\n{self.log_tail()}")
            try:
                client.system_stats()
                return
            except (urllib.error.URLError, ConnectionError, OSError):
                time.sleep(0.25)
        self.stop()
        raise ServerError(f"ComfyUI did not answer /system_stats within {self.startup_timeout:.0f} s:\n{self.log_tail()}")

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, chars: int = 6000) -> str:
        return self.log_text()[-chars:]

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)  # our own process group (start_new_session)
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=15)
        except ProcessLookupError:
            pass

    def __enter__(self) -> "ComfyServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
