"""A minimal client for `securer-runc serve`, using only Python's standard library.

The server runs R code in sandboxes; R code calls tools, which this client
answers with Python functions. See PROTOCOL.md in the repository.

    from securer_client import Client, Tool

    with Client.spawn() as client:   # or Client.connect("/run/securer-runc.sock"),
                                     # or Client.connect_tcp("127.0.0.1", 7070, token)
        add = Tool("add", lambda a, b: a + b, args={"a": "numeric", "b": "numeric"})
        session = client.create_session(tools=[add])
        result = session.execute("add(2, 3)")
        print(result["value_plain"])             # 5
        r = session.execute("plot(1:10)", plots={"format": "png", "width": 768, "height": 576})
        for d in result_displays(r):             # the pages drawn, as bytes
            open("plot.png", "wb").write(d["data"])
"""

import base64
import itertools
import json
import os
import socket
import subprocess
import warnings


class ServerError(Exception):
    """The server refused a request; .code names the reason (see PROTOCOL.md)."""

    def __init__(self, code, message):
        super().__init__(f"{code}: {message}")
        self.code = code


class StateLostWarning(UserWarning):
    """The session's R was replaced (it died: out of memory, a crash, a kill
    after a timeout): the execution ran in a new R, without the variables
    earlier executions made. The result's "state_lost_reason" says why."""


def result_displays(result):
    """The plots of a result, decoded: a list of dicts with "mime"
    ("image/png" or "image/svg+xml"), "data" (bytes), "width", "height"
    (pixels) and "dpi", in the order they were drawn. result["displays_dropped"]
    (absent when 0) counts pages over the limits (20 pages, 2 MiB each, 4 MiB
    together)."""
    out = []
    for d in result.get("displays") or []:
        for mime, data in d["data"].items():
            out.append({"mime": mime, "data": base64.b64decode(data), **d["metadata"]})
    return out


def printed_output(result):
    """stdout without the auto-print of the value at its end (exact:
    result["printed_bytes"] bytes come off the end), or all of stdout when
    the server elided part of it."""
    out = result.get("stdout", "").encode("utf-8")
    n = result.get("printed_bytes", 0)
    if n <= 0 or result.get("stdout_elided") or n > len(out):
        return result.get("stdout", "")
    return out[: len(out) - n].decode("utf-8", errors="replace")


class Tool:
    """A tool R can call by name; fn gets the arguments as plain Python values."""

    def __init__(self, name, fn, args=None, description=""):
        self.name, self.fn, self.description = name, fn, description
        self.args = dict(args or {})  # argument name -> type ("" for unchecked), in call order

    def decl(self):
        return {"name": self.name, "description": self.description,
                "args": [{"name": n, "type": t} for n, t in self.args.items()]}


class Client:
    """One connection to the server. Not for use from several threads at once."""

    def __init__(self, rfile, wfile, closer, token=None, require_sandbox=True):
        self._r, self._w, self._closer = rfile, wfile, closer
        self._ids = itertools.count(1)
        self._tools = {}  # session or pool name -> {tool name: Tool}
        try:
            self.hello = self._read()
            if self.hello.get("type") != "hello":
                raise ServerError("bad_request", f"expected hello, got {self.hello}")
            if require_sandbox and self.hello.get("sandboxed") is False:
                raise ServerError("needs_sandbox", "the server runs R without a sandbox (--unsafe-no-sandbox); "
                                  "pass require_sandbox=False to accept that")
            if self.hello.get("auth_required"):
                if not token:
                    raise ServerError("unauthorized", "the server wants a token (SECURER_TOKEN)")
                self._request({"op": "auth", "token": token}, "ok")
        except BaseException:
            closer()
            raise

    @classmethod
    def spawn(cls, command=None, require_sandbox=True):
        """Start `securer-runc serve --stdio` (needs root) and talk to it."""
        command = command or ["securer-runc", "serve", "--stdio"]
        proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE)

        def close():
            proc.stdin.close()
            proc.wait(timeout=30)

        return cls(proc.stdout, proc.stdin, close, require_sandbox=require_sandbox)

    @classmethod
    def connect(cls, path=None, token=None):
        """Connect to a running daemon's Unix socket."""
        path = path or os.environ.get("SECURER_SOCKET", "/run/securer-runc.sock")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(path)
        return cls(sock.makefile("rb"), sock.makefile("wb"), sock.close, token or os.environ.get("SECURER_TOKEN"))

    @classmethod
    def connect_tcp(cls, host, port, token=None):
        """Connect to a daemon serving on TCP (serve --listen tcp:HOST:PORT --token-file F)."""
        sock = socket.create_connection((host, int(port)))
        return cls(sock.makefile("rb"), sock.makefile("wb"), sock.close, token or os.environ.get("SECURER_TOKEN"))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        """Disconnecting closes every session this client made."""
        self._closer()

    def _read(self):
        line = self._r.readline()
        if not line:
            raise ConnectionError("the server closed the connection")
        return json.loads(line)

    def _send(self, msg):
        self._w.write((json.dumps(msg) + "\n").encode())
        self._w.flush()

    def _request(self, msg, want):
        msg["id"] = str(next(self._ids))
        self._send(msg)
        while True:
            ev = self._read()
            if ev.get("id") != msg["id"]:
                continue
            if ev["type"] == "error":
                raise ServerError(ev["error"]["code"], ev["error"]["message"])
            if ev["type"] == want:
                return ev

    def create_session(self, tools=(), clamp=False, **options):
        """Options: memory_bytes, pids, cpus, tmp_bytes, timeout (s), max_tool_calls, ...

        clamp=True lowers options above the server's ceilings to them instead
        of failing; session.info["limits"] and ["clamped"] say what applied."""
        msg = {"op": "create_session", "tools": [t.decl() for t in tools], "options": options}
        if clamp:
            msg["clamp"] = True
        ev = self._request(msg, "session")
        self._tools[ev["session"]] = {t.name: t for t in tools}
        return Session(self, ev["session"], "session", ev)

    def create_pool(self, size, tools=(), reset="fresh", clamp=False, **options):
        msg = {"op": "create_pool", "size": size, "reset": reset,
               "tools": [t.decl() for t in tools], "options": options}
        if clamp:
            msg["clamp"] = True
        ev = self._request(msg, "pool")
        self._tools[ev["pool"]] = {t.name: t for t in tools}
        return Session(self, ev["pool"], "pool", ev)

    def _execute(self, target, kind, code, timeout, fresh, on_stdout, on_stderr, acquire_timeout=None, plots=None, inputs=None, outputs=False):
        rid = str(next(self._ids))
        msg = {"op": "execute", "id": rid, kind: target, "code": code, "fresh": fresh}
        if timeout:
            msg["timeout"] = timeout
        if acquire_timeout is not None:
            msg["acquire_timeout"] = acquire_timeout
        if plots:
            msg["plots"] = plots
        if inputs:
            msg["inputs"] = [{"name": n, "data": _b64(d)} for n, d in inputs.items()]
        if outputs:
            msg["outputs"] = {"collect": True}
        self._send(msg)
        tools = self._tools[target]
        while True:
            ev = self._read()
            if ev.get("id") != rid:
                continue
            kind_ = ev["type"]
            if kind_ == "stdout" and on_stdout:
                on_stdout(ev["text"])
            elif kind_ == "stderr" and on_stderr:
                on_stderr(ev["text"])
            elif kind_ == "tool_call":
                self._answer(tools[ev["tool"]], ev)
            elif kind_ == "result":
                result = {**ev["result"], "value_plain": ev["value_plain"]}
                if "files" in result:
                    result["files"] = {f["name"]: base64.b64decode(f["data"]) for f in result["files"]}
                result.setdefault("state_lost", False)
                if result["state_lost"]:
                    warnings.warn(StateLostWarning(
                        "the session's R was restarted and its state lost: "
                        + result.get("state_lost_reason", "")), stacklevel=3)
                return result
            elif kind_ == "error":
                raise ServerError(ev["error"]["code"], ev["error"]["message"])

    def _answer(self, tool, ev):
        try:
            args = [ev["args_plain"][name] for name in tool.args]
            value = tool.fn(*args)
            self._send({"op": "tool_result", "call": ev["call"], "value": value})
        except Exception as e:  # the tool's failure becomes an R error inside
            # The tool's own message, as the R code (and securer 0.2.0 code
            # matching it) expects; KeyError's str() would add quotes.
            msg = e.args[0] if len(e.args) == 1 and isinstance(e.args[0], str) else str(e)
            self._send({"op": "tool_result", "call": ev["call"], "error": msg or type(e).__name__})


class Session:
    """A session or a pool on the server."""

    def __init__(self, client, name, kind, info=None):
        self._client, self.name, self._kind = client, name, kind
        # The create reply: pid (R's, in the box), sandbox, limits, clamped.
        self.info = info or {}

    def __repr__(self):
        tools = len(self._client._tools.get(self.name, {}))
        if self._kind == "pool":
            return f"<SecurePool {self.name}> sandbox={self.info.get('sandbox')} tools={tools}"
        return f"<SecureSession {self.name}> pid={self.info.get('pid')} sandbox={self.info.get('sandbox')} tools={tools}"

    def execute(self, code, timeout=None, fresh=False, on_stdout=None, on_stderr=None, acquire_timeout=None, plots=None, inputs=None, outputs=False):
        """Run code; returns the result (verdict, value, value_plain, stdout, ...).

        value_plain is the value as plain JSON: a function, call, formula,
        symbol or primitive is its text (a string), an environment an
        object of its bindings, an S4 object an object of its slots, and a
        value that could not cross (external pointer) None; value keeps the
        typed form (PROTOCOL.md, "Typed values").

        result["state_lost"] is True (and a StateLostWarning is issued) when
        the code ran in a new R because the session's R had died: variables
        of earlier executions are gone.

        On a pool, acquire_timeout (seconds) bounds the wait for a free
        session: past it (at once with 0) ServerError with code "pool_busy"
        ("all sessions are busy"); None waits as long as it takes.

        plots ({"format": "png"|"svg"|"none", "width": px, "height": px,
        "dpi": n}, all optional) says how pages the code draws come back in
        result["displays"]; result_displays(result) decodes them. On an R
        error, result["error"]["traceback"] lists the code's calls.

        inputs ({name: bytes}) are written to the code's work dir
        (/tmp/work) before it runs; with outputs=True, result["files"] is
        {name: bytes} of the files the code made or changed there
        (result["files_dropped"] counts those left out: links, bad names,
        over the limits)."""
        return self._client._execute(self.name, self._kind, code, timeout, fresh, on_stdout, on_stderr, acquire_timeout, plots, inputs, outputs)

    def put_file(self, name, data):
        """Write data (bytes or str) to the session's work dir as name (a
        relative path: at most 4 components of [A-Za-z0-9._-]); between
        executions. At most 4 MiB."""
        self._client._request({"op": "put_file", "session": self.name, "name": name, "data": _b64(data)}, "file_put")

    def get_file(self, name):
        """The bytes of the regular file name of the work dir (links are refused)."""
        ev = self._client._request({"op": "get_file", "session": self.name, "name": name}, "file")
        return base64.b64decode(ev["data"])

    def list_files(self):
        """{name: size} of the regular files of the work dir."""
        ev = self._client._request({"op": "list_files", "session": self.name}, "files")
        return {f["name"]: f["size"] for f in ev["files"]}

    def close(self):
        op = "close_session" if self._kind == "session" else "close_pool"
        self._client._request({"op": op, self._kind: self.name}, "closed")


def _b64(data):
    if isinstance(data, str):
        data = data.encode()
    return base64.b64encode(data).decode("ascii")
