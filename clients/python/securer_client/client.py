"""The connection, sessions, pools, executions and tools."""

import base64
import itertools
import json
import os
import queue
import socket
import subprocess
import threading
import warnings

from .errors import ConnectionClosed, NeedsSandboxError, NotFoundError, ServerError, StateLostWarning, \
    UnauthorizedError
from .values import decode, encode

DEFAULT_SOCKET = "/run/securer-runc/serve.sock"
PROTOCOL = 1

_CLOSED = object()  # queued to every waiting request when the connection ends


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
    """A tool R can call by name.

    fn gets the arguments positionally, in the order of args (name ->
    type: one of the hello's arg_types, or "" for unchecked), decoded
    faithfully (values.decode: NULL is None, names kept, factors, dates,
    data frames); with plain=True it gets args_plain (plain JSON) instead,
    as the 0.x client did. Its return value goes back typed
    (values.encode), or as plain JSON with plain=True. An exception
    becomes an R error with its message. fn runs in a worker thread: it
    may block; when the execution ends first, its answer is dropped."""

    def __init__(self, name, fn, args=None, description="", timeout=None, plain=False):
        self.name, self.fn, self.description, self.timeout, self.plain = name, fn, description, timeout, plain
        self.args = dict(args or {})  # argument name -> type ("" for unchecked), in call order

    def decl(self):
        d = {"name": self.name, "description": self.description,
             "args": [{"name": n, "type": t} for n, t in self.args.items()]}
        if self.timeout is not None:
            d["timeout"] = self.timeout
        return d


class Result(dict):
    """An execution's result: the server's result object (PROTOCOL.md,
    "Events of an execution") as a dict, plus "value_plain", and with
    outputs, "files" as {name: bytes}. r["value"] is the typed form;
    r.value is that value decoded (values.decode). r.tool_cancelled lists
    the tool_cancelled events of the execution, r.warm is the one-shot's
    "warm" (None elsewhere)."""

    tool_cancelled = ()
    warm = None

    @property
    def value(self):
        return decode(self.get("value"))

    @property
    def verdict(self):
        return self.get("verdict")

    @property
    def ok(self):
        return self.get("verdict") == "ok"

    @property
    def stdout(self):
        return self.get("stdout", "")

    @property
    def stderr(self):
        return self.get("stderr", "")


class Execution:
    """An execution sent to the server. result() waits for its end,
    answering its tool calls; cancel() asks the server to end it."""

    def __init__(self, client, rid, tools, on_stdout, on_stderr):
        self._client, self.id, self._tools = client, rid, tools
        self._on_stdout, self._on_stderr = on_stdout, on_stderr
        self._q = client._register(rid)
        self._lock = threading.Lock()
        self._waiting = set()  # calls a tool function is working on
        self._cancelled = []  # tool_cancelled events
        self._done = threading.Event()
        self._result = self._error = None
        self._driver = None

    def _start_driver(self):
        """Handle events in a thread of its own (submit())."""
        self._driver = threading.Thread(target=self._drive, name=f"securer-exec-{self.id}", daemon=True)
        self._driver.start()

    def _drive(self):
        try:
            self._result = self._loop()
        except BaseException as e:  # handed to the caller of result()
            self._error = e
        finally:
            self._client._unregister(self.id)
            self._done.set()

    def result(self, timeout=None):
        """The Result; raises the request's ServerError, or ConnectionClosed.
        timeout (seconds) bounds this wait only (TimeoutError), not the
        execution (its own timeout does that)."""
        if self._driver is None:
            with self._lock:
                drive = self._driver is None
                if drive:
                    self._driver = threading.current_thread()
            if drive:
                self._drive()
        if not self._done.wait(timeout):
            raise TimeoutError(f"execution {self.id} still running")
        if self._error is not None:
            raise self._error
        return self._result

    def cancel(self):
        """Ask the server to end the execution (verdict canceled); nothing
        happens if it has ended already."""
        try:
            self._client._request({"op": "cancel", "target": self.id}, "ok")
        except NotFoundError:
            pass

    def _loop(self):
        while True:
            ev = self._q.get()
            if ev is _CLOSED:
                raise self._client._closed_error()
            kind = ev.get("type")
            if kind == "stdout":
                if self._on_stdout:
                    self._on_stdout(ev["text"])
            elif kind == "stderr":
                if self._on_stderr:
                    self._on_stderr(ev["text"])
            elif kind == "tool_call":
                self._call(ev)
            elif kind == "tool_cancelled":
                with self._lock:
                    self._waiting.discard(ev.get("call"))
                    self._cancelled.append(ev)
            elif kind == "result":
                return self._finish(ev)
            elif kind == "error":
                raise ServerError.from_event(ev)

    def _finish(self, ev):
        with self._lock:
            # Calls still running: their answers are dropped (the server
            # would refuse them: the execution is over).
            self._waiting.clear()
        r = Result(ev["result"])
        r["value_plain"] = ev.get("value_plain")
        if "files" in r:
            r["files"] = {f["name"]: base64.b64decode(f["data"]) for f in r["files"]}
        r.setdefault("state_lost", False)
        r.tool_cancelled = list(self._cancelled)
        r.warm = ev.get("warm")
        if r["state_lost"]:
            warnings.warn(StateLostWarning(
                "the session's R was restarted and its state lost: " + r.get("state_lost_reason", "")), stacklevel=4)
        return r

    def _call(self, ev):
        call = ev["call"]
        tool = self._tools.get(ev.get("tool"))
        with self._lock:
            self._waiting.add(call)
        threading.Thread(target=self._run_tool, args=(tool, ev), name=f"securer-tool-{call}", daemon=True).start()

    def _run_tool(self, tool, ev):
        call = ev["call"]
        try:
            if tool is None:
                raise LookupError(f"this client has no tool {ev.get('tool')!r}")
            if tool.plain:
                plain = ev.get("args_plain") or {}
                value = tool.fn(*[plain.get(n) for n in tool.args])
                answer = {"value": value}
            else:
                typed = ev.get("args") or {}
                value = tool.fn(*[decode(typed.get(n)) for n in tool.args])
                answer = {"typed": encode(value)}
        except Exception as e:  # the tool's failure becomes an R error inside
            # The tool's own message, as R code matching it expects;
            # KeyError's str() would add quotes.
            msg = e.args[0] if len(e.args) == 1 and isinstance(e.args[0], str) else str(e)
            answer = {"error": msg or type(e).__name__}
        with self._lock:
            if call not in self._waiting:
                return  # cancelled, or the execution ended: nobody waits
            self._waiting.discard(call)
        self._client._tool_result(call, answer)


class Session:
    """A session or a pool on the server. Several threads may execute on
    one at once: on a session they queue (the server runs them in
    arrival order), on a pool they run concurrently up to its size."""

    def __init__(self, client, name, kind, tools, info=None):
        self._client, self.name, self._kind, self._tools = client, name, kind, tools
        # The create reply: pid (R's, in the box), sandbox, limits, clamped.
        self.info = info or {}

    def __repr__(self):
        if self._kind == "pool":
            return f"<SecurePool {self.name}> sandbox={self.info.get('sandbox')} tools={len(self._tools)}"
        return (f"<SecureSession {self.name}> pid={self.info.get('pid')} sandbox={self.info.get('sandbox')} "
                f"tools={len(self._tools)}")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        try:
            self.close()
        except (ServerError, ConnectionClosed):
            pass

    def submit(self, code, timeout=None, fresh=False, on_stdout=None, on_stderr=None, acquire_timeout=None,
               plots=None, inputs=None, outputs=False):
        """Send code to run; returns an Execution at once (its events are
        handled in a thread of its own). Arguments as for execute()."""
        msg = {"op": "execute", self._kind: self.name, "code": code}
        if fresh:
            msg["fresh"] = True
        if acquire_timeout is not None:
            msg["acquire_timeout"] = acquire_timeout
        return self._client._submit(msg, self._tools, timeout, on_stdout, on_stderr, plots, inputs, outputs,
                                    driver=True)

    def execute(self, code, timeout=None, fresh=False, on_stdout=None, on_stderr=None, acquire_timeout=None,
                plots=None, inputs=None, outputs=False):
        """Run code; returns the Result (verdict, value, value_plain, stdout, ...).

        value_plain is the value as plain JSON; result.value is the typed
        value decoded (values.decode: NULL None, names kept, factors,
        dates, data frames). on_stdout/on_stderr get the output as it
        comes (in this thread, in order). timeout (seconds) bounds the
        execution; when it ends while a tool function runs, execute()
        returns at the timeout and the tool's answer is dropped.

        result["state_lost"] is True (and a StateLostWarning is issued) when
        the code ran in a new R because the session's R had died.

        On a pool, acquire_timeout (seconds) bounds the wait for a free
        session: past it PoolBusyError.

        plots ({"format": "png"|"svg"|"none", "width": px, "height": px,
        "dpi": n}) says how drawn pages come back in result["displays"];
        result_displays(result) decodes them.

        inputs ({name: bytes}) are written to the work dir before the code
        runs; with outputs=True, result["files"] is {name: bytes} of the
        files the code made or changed there."""
        msg = {"op": "execute", self._kind: self.name, "code": code}
        if fresh:
            msg["fresh"] = True
        if acquire_timeout is not None:
            msg["acquire_timeout"] = acquire_timeout
        return self._client._submit(msg, self._tools, timeout, on_stdout, on_stderr, plots, inputs,
                                    outputs).result()

    def restart(self):
        """A new R, all state gone; returns the new pid."""
        return self._client._request({"op": "restart_session", "session": self.name}, "restarted").get("pid")

    def status(self):
        """A pool's status: {"total", "idle", "busy", "starting", "dead"}."""
        return self._client._request({"op": "pool_status", "pool": self.name}, "pool").get("status")

    def put_file(self, name, data):
        """Write data (bytes or str) to the session's work dir as name (a
        relative path: at most 4 components of [A-Za-z0-9._-]); at most 4 MiB."""
        self._client._request({"op": "put_file", "session": self.name, "name": name, "data": _b64(data)},
                              "file_put")

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


class Client:
    """One connection to the server, safe to use from several threads: a
    reader thread sorts the server's events by request id, so that
    executions on different sessions (or on one pool) run at once."""

    def __init__(self, rfile, wfile, closer, token=None, require_sandbox=True):
        self._r, self._w, self._closer = rfile, wfile, closer
        self._ids = itertools.count(1)
        self._lock = threading.Lock()  # _calls, _tool_reqs, _ended
        self._wlock = threading.Lock()  # one message at a time on the wire
        self._calls = {}  # request id -> queue of its events
        self._tool_reqs = {}  # tool_result request id -> call
        self._ended = None  # why the connection ended (an exception), once it has
        self._last_error = None  # the last error event without an id
        self.tool_errors = []  # refusals of tool answers other than not_found (ServerError)
        try:
            self.hello = self._read()
            if self.hello.get("type") == "error":
                raise ServerError.from_event(self.hello)  # draining, limit, ...
            if self.hello.get("type") != "hello":
                raise ConnectionClosed(f"expected hello, got {self.hello}")
            if self.hello.get("protocol") != PROTOCOL:
                raise ConnectionClosed(f"the server speaks protocol {self.hello.get('protocol')}, "
                                       f"this client {PROTOCOL}")
            if require_sandbox and self.hello.get("sandboxed") is False:
                raise NeedsSandboxError("needs_sandbox", "the server runs R without a sandbox "
                                        "(--unsafe-no-sandbox); pass require_sandbox=False to accept that")
            if self.hello.get("auth_required"):
                if not token:
                    raise UnauthorizedError("unauthorized", "the server wants a token (SECURER_TOKEN)")
                self._send({"op": "auth", "id": "auth", "token": token})
                ev = self._read()
                if ev.get("type") == "error":
                    raise ServerError.from_event(ev)
        except BaseException:
            closer()
            raise
        self._reader = threading.Thread(target=self._read_loop, name="securer-reader", daemon=True)
        self._reader.start()

    # ---- connecting ------------------------------------------------------

    @classmethod
    def spawn(cls, command=None, require_sandbox=True):
        """Start `securer-runc serve --stdio` (needs root) and talk to it."""
        command = command or ["securer-runc", "serve", "--stdio"]
        proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE)

        def close():
            try:
                proc.stdin.close()
            except OSError:
                pass
            proc.wait(timeout=30)
            proc.stdout.close()

        c = cls(proc.stdout, proc.stdin, close, require_sandbox=require_sandbox)
        c.process = proc
        return c

    @classmethod
    def connect(cls, path=None, token=None, require_sandbox=True):
        """Connect to a running daemon's Unix socket: path, else the
        SECURER_SOCKET environment variable, else /run/securer-runc/serve.sock."""
        path = path or os.environ.get("SECURER_SOCKET") or DEFAULT_SOCKET
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(path)
        except BaseException:
            sock.close()
            raise
        return cls._over(sock, token or os.environ.get("SECURER_TOKEN"), require_sandbox)

    @classmethod
    def connect_tcp(cls, host, port, token=None, require_sandbox=True):
        """Connect to a daemon serving on TCP (serve --listen tcp:HOST:PORT --token-file F)."""
        sock = socket.create_connection((host, int(port)))
        return cls._over(sock, token or os.environ.get("SECURER_TOKEN"), require_sandbox)

    @classmethod
    def open(cls, address=None, token=None, require_sandbox=True):
        """Connect by address: "unix:PATH", "tcp:HOST:PORT", a path, or
        None (connect()'s default)."""
        if not address:
            return cls.connect(None, token, require_sandbox)
        if address.startswith("tcp:"):
            host, _, port = address[len("tcp:"):].rpartition(":")
            return cls.connect_tcp(host.strip("[]"), port, token, require_sandbox)
        if address.startswith("unix:"):
            address = address[len("unix:"):]
        return cls.connect(address, token, require_sandbox)

    @classmethod
    def _over(cls, sock, token, require_sandbox):
        def close():
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

        return cls(sock.makefile("rb", buffering=1 << 16), _SockWriter(sock), close, token, require_sandbox)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        """Disconnecting closes every session and pool this client made."""
        with self._lock:
            if self._ended is None:
                self._ended = ConnectionClosed("the client closed the connection")
        self._closer()

    # ---- the wire ----------------------------------------------------------

    def _read(self):
        line = self._r.readline()
        if not line:
            raise ConnectionClosed("the server closed the connection")
        return json.loads(line)

    def _send(self, msg):
        b = (json.dumps(msg, separators=(",", ":"), allow_nan=False) + "\n").encode()
        with self._wlock:
            try:
                self._w.write(b)
                self._w.flush()
            except (OSError, ValueError) as e:
                raise self._closed_error() from e

    def _read_loop(self):
        try:
            while True:
                ev = self._read()
                rid = ev.get("id")
                with self._lock:
                    q = self._calls.get(rid) if rid is not None else None
                    call = self._tool_reqs.pop(rid, None) if q is None and rid is not None else None
                if q is not None:
                    q.put(ev)
                elif call is not None:
                    self._tool_refused(call, ev)
                elif ev.get("type") == "error":
                    self._last_error = ServerError.from_event(ev)
        except BaseException as e:
            with self._lock:
                if self._ended is None:
                    cause = self._last_error
                    msg = "the server closed the connection"
                    if cause is not None:
                        msg += f" ({cause})"
                    elif not isinstance(e, ConnectionClosed):
                        msg += f" ({e})"
                    self._ended = ConnectionClosed(msg, cause)
                waiting = list(self._calls.values())
            for q in waiting:
                q.put(_CLOSED)

    def _closed_error(self):
        with self._lock:
            return self._ended or ConnectionClosed("the connection is closed")

    def _register(self, rid):
        q = queue.SimpleQueue()
        with self._lock:
            if self._ended is not None:
                raise self._ended
            self._calls[rid] = q
        return q

    def _unregister(self, rid):
        with self._lock:
            self._calls.pop(rid, None)

    def _next_id(self):
        with self._lock:
            return str(next(self._ids))

    def _request(self, msg, want):
        rid = msg["id"] = self._next_id()
        q = self._register(rid)
        try:
            self._send(msg)
            while True:
                ev = q.get()
                if ev is _CLOSED:
                    raise self._closed_error()
                if ev.get("type") == "error":
                    raise ServerError.from_event(ev)
                if ev.get("type") == want:
                    return ev
        finally:
            self._unregister(rid)

    def _tool_result(self, call, answer):
        rid = self._next_id()
        with self._lock:
            self._tool_reqs[rid] = call
        try:
            self._send({"op": "tool_result", "id": rid, "call": call, **answer})
        except ConnectionClosed:
            pass
        except ValueError as e:  # not JSON (NaN in a plain answer, ...)
            self._send({"op": "tool_result", "id": rid, "call": call, "error": f"the tool's answer: {e}"})

    def _tool_refused(self, call, ev):
        """A tool_result was refused: not_found is a call nobody waits for
        any more (cancelled, ended: nothing to do); anything else (an
        answer the server could not take) is kept in tool_errors and the
        call answered with an error, so that R does not wait for nothing."""
        if ev.get("type") != "error":
            return
        err = ServerError.from_event(ev)
        if isinstance(err, NotFoundError):
            return
        self.tool_errors.append(err)
        threading.Thread(target=self._tool_result, args=(call, {"error": f"the tool's answer was refused: {err}"}),
                         daemon=True).start()

    def _submit(self, msg, tools, timeout, on_stdout, on_stderr, plots, inputs, outputs, driver=False):
        rid = msg["id"] = self._next_id()
        if timeout:
            msg["timeout"] = timeout
        if plots:
            msg["plots"] = plots
        if inputs:
            msg["inputs"] = [{"name": n, "data": _b64(d)} for n, d in inputs.items()]
        if outputs:
            msg["outputs"] = {"collect": True}
        ex = Execution(self, rid, tools, on_stdout, on_stderr)
        try:
            self._send(msg)
        except BaseException:
            self._unregister(rid)
            raise
        if driver:
            ex._start_driver()
        return ex

    # ---- requests ----------------------------------------------------------

    def ping(self):
        self._request({"op": "ping"}, "pong")

    def create_session(self, tools=(), clamp=False, **options):
        """Options: memory_bytes, pids, cpus, tmp_bytes, fsize_bytes,
        timeout (s), max_tool_calls, output_limit, max_executions,
        max_code_bytes, preload.

        clamp=True lowers options above the server's ceilings to them instead
        of failing; session.info["limits"] and ["clamped"] say what applied."""
        msg = {"op": "create_session", "tools": [t.decl() for t in tools], "options": options}
        if clamp:
            msg["clamp"] = True
        ev = self._request(msg, "session")
        return Session(self, ev["session"], "session", {t.name: t for t in tools}, ev)

    def create_pool(self, size, tools=(), reset="fresh", clamp=False, **options):
        """A pool of size sessions (reset: fresh, none or restart); execute on
        it as on a session."""
        msg = {"op": "create_pool", "size": size, "reset": reset,
               "tools": [t.decl() for t in tools], "options": options}
        if clamp:
            msg["clamp"] = True
        ev = self._request(msg, "pool")
        return Session(self, ev["pool"], "pool", {t.name: t for t in tools}, ev)

    def submit(self, code, tools=(), timeout=None, on_stdout=None, on_stderr=None, plots=None, inputs=None,
               outputs=False, clamp=False, **options):
        """run(), returning an Execution at once."""
        msg = self._one_shot(code, tools, clamp, options)
        return self._submit(msg, {t.name: t for t in tools}, timeout, on_stdout, on_stderr, plots, inputs, outputs,
                            driver=True)

    def run(self, code, tools=(), timeout=None, on_stdout=None, on_stderr=None, plots=None, inputs=None,
            outputs=False, clamp=False, **options):
        """A one-shot: code runs in a fresh box (a warm one when the daemon
        has one ready: result.warm), with tools and options as for
        create_session; nothing of it is kept. Returns the Result."""
        msg = self._one_shot(code, tools, clamp, options)
        return self._submit(msg, {t.name: t for t in tools}, timeout, on_stdout, on_stderr, plots, inputs,
                            outputs).result()

    @staticmethod
    def _one_shot(code, tools, clamp, options):
        msg = {"op": "execute", "code": code}
        if tools:
            msg["tools"] = [t.decl() for t in tools]
        if options:
            msg["options"] = options
        if clamp:
            msg["clamp"] = True
        return msg


class _SockWriter:
    """sendall per message: one system call, no second buffer."""

    def __init__(self, sock):
        self._sock = sock

    def write(self, b):
        self._sock.sendall(b)

    def flush(self):
        pass


def _b64(data):
    if isinstance(data, str):
        data = data.encode()
    return base64.b64encode(data).decode("ascii")
