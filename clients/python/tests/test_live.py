"""The client against a real daemon with real containers (as root).

SECURER_RUNC names the binary (default: securer-runc on PATH). Each test
class's daemon listens on a socket in a temporary directory, with its own
--state and --cgroup-parent; they are checked empty and reaped after.
"""

import asyncio
import datetime
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from securer_client import (Client, ConnectionClosed, DataFrame, DrainingError, Factor,  # noqa: E402
                            FileRefusedError, InvalidConfigError, NotFoundError, PoolBusyError, RejectedError,
                            RVector, Tool, UnauthorizedError)
from securer_client.aio import AsyncClient  # noqa: E402

BINARY = os.environ.get("SECURER_RUNC") or shutil.which("securer-runc") or "securer-runc"


class Daemon:
    """securer-runc serve on a temporary Unix socket (or TCP with a token)."""

    def __init__(self, tcp=False, extra=()):
        self.dir = tempfile.mkdtemp(prefix="securer-pytest-")
        self.state = os.path.join(self.dir, "state")
        self.cgroup = "/securer-pytest-" + secrets.token_hex(4)
        self.socket = os.path.join(self.dir, "sock")
        args = [BINARY, "serve", "--state", self.state, "--cgroup-parent", self.cgroup, *extra]
        self.token = None
        if tcp:
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
            s.close()
            self.token = secrets.token_hex(32)
            tf = os.path.join(self.dir, "token")
            with open(os.open(tf, os.O_WRONLY | os.O_CREAT, 0o600), "w") as f:
                f.write(self.token + "\n")
            args += ["--listen", f"tcp:127.0.0.1:{self.port}", "--token-file", tf]
        else:
            args += ["--listen", "unix:" + self.socket]
        self.log = open(os.path.join(self.dir, "serve.log"), "wb")
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"serve exited {self.proc.returncode}: {self.output()}")
            try:
                self.client().close()
                return
            except (OSError, ConnectionClosed):
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("serve did not come up within 30 s: " + self.output())

    def client(self):
        if self.token:
            return Client.connect_tcp("127.0.0.1", self.port, token=self.token)
        return Client.connect(self.socket)

    def output(self):
        with open(os.path.join(self.dir, "serve.log"), "rb") as f:
            return f.read().decode(errors="replace")

    def stop(self):
        """SIGTERM, wait, then check nothing is left; returns what was."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        left = []
        for sub in ("sessions", "containers"):
            d = os.path.join(self.state, sub)
            if os.path.isdir(d):
                left += [os.path.join(sub, n) for n in os.listdir(d)]
        subprocess.run([BINARY, "reap", "--state", self.state, "--cgroup-parent", self.cgroup],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        shutil.rmtree(self.dir, ignore_errors=True)
        return left


class LiveTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.daemon = Daemon()
        cls.client = cls.daemon.client()

    @classmethod
    def tearDownClass(cls):
        cls.client.close()
        left = cls.daemon.stop()
        if left:
            raise AssertionError(f"the daemon left behind: {left}")

    def session(self, **kw):
        s = self.client.create_session(**kw)
        self.addCleanup(s.close)
        return s

    def test_values_from_r(self):
        s = self.session()
        v = s.execute('list(n = NULL, v = c(a = 1, b = NA), f = factor(c("y", "x", NA)), '
                      'd = as.Date("2024-02-29"), t = as.POSIXct("2024-01-02 03:04:05", tz = "UTC"), '
                      'df = data.frame(x = 1:2, s = c("a", "b")), i = NA_integer_, s = "é", r = as.raw(c(0, 255)))').value
        self.assertIsInstance(v, RVector)
        self.assertEqual(v.names, ["n", "v", "f", "d", "t", "df", "i", "s", "r"])
        self.assertIsNone(v["n"])  # NULL, not {}
        self.assertEqual((v["v"].names, list(v["v"])), (["a", "b"], [1.0, None]))
        self.assertIsInstance(v["f"], Factor)
        self.assertEqual((list(v["f"]), v["f"].levels), (["y", "x", None], ["x", "y"]))
        self.assertEqual(v["d"], datetime.date(2024, 2, 29))
        self.assertEqual(v["t"], datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc))
        self.assertIsInstance(v["df"], DataFrame)
        self.assertEqual(v["df"].rows(), [{"x": 1, "s": "a"}, {"x": 2, "s": "b"}])
        self.assertIsNone(v["i"])
        self.assertEqual(v["s"], "é")
        self.assertEqual(v["r"], b"\x00\xff")

    def test_values_round_trip_through_a_tool(self):
        # R sends each value to a Python tool that returns what it got:
        # R must get back an identical value.
        echo = Tool("echo", lambda x: x, args={"x": ""})
        s = self.session(tools=[echo])
        exprs = ['NULL', 'c(a = 1, b = 2)', 'list(a = 1, b = "x", c = NULL)', 'list(1, 2)', '1:3', 'c(1.5, NA)',
                 'c(TRUE, NA)', 'factor(c("b", "a", "b"))', 'as.Date(c("2024-01-01", NA))',
                 'as.POSIXct("2024-01-02 03:04:05", tz = "UTC")', 'data.frame(x = 1:2, s = c("a", "b"))',
                 '"\u00e9"', 'as.raw(1:3)', 'complex(real = 1, imaginary = -1)', 'c(x = "a")', 'Inf',
                 'matrix(1:6, 2)', 'list(list(a = 1L), NULL)']
        code = "vapply(list(" + ", ".join(f"quote({e})" for e in exprs) + \
            "), function(e) { x <- eval(e); identical(echo(x), x) }, logical(1))"
        r = s.execute(code)
        self.assertEqual(r.verdict, "ok", r.get("error"))
        failed = [e for e, ok in zip(exprs, r.value) if not ok]
        self.assertEqual(failed, [], "values that did not come back identical")

    def test_tool_answered_by_python(self):
        seen = []

        def describe(df, f):
            seen.append(threading.current_thread().name)
            return {"rows": df.nrow, "levels": f.levels, "when": datetime.date(2020, 1, 2)}

        s = self.session(tools=[Tool("describe", describe, args={"df": "data.frame", "f": ""})])
        r = s.execute('x <- describe(data.frame(a = 1:3), factor(c("p", "q"))); '
                      'stopifnot(identical(x$rows, 3L), identical(x$when, as.Date("2020-01-02"))); x$levels')
        self.assertEqual(r.verdict, "ok", r.get("error"))
        self.assertEqual(list(r.value), ["p", "q"])
        self.assertTrue(seen and seen[0].startswith("securer-tool-"), seen)
        r = s.execute('tryCatch(describe(1, 2), error = function(e) conditionMessage(e))')
        self.assertIn("data.frame", r.value)  # refused by the server's type check

    def test_tool_error_becomes_r_error(self):
        def boom():
            raise KeyError("no such thing")

        s = self.session(tools=[Tool("boom", boom)])
        self.assertEqual(s.execute('tryCatch(boom(), error = function(e) conditionMessage(e))').value,
                         "no such thing")

    def test_streaming_order_of_10000_lines(self):
        s = self.session()
        for code in ('cat(sprintf("line %d\\n", 1:10000), sep = "")',
                     'for (i in 1:10000) cat("line", i, "\\n")'):
            with self.subTest(code):
                chunks = []
                r = s.execute(code, on_stdout=chunks.append)
                self.assertEqual(r.verdict, "ok")
                lines = "".join(chunks).splitlines()
                self.assertEqual(len(lines), 10000)
                self.assertEqual([int(line.split()[1]) for line in lines], list(range(1, 10001)))
                # Coalesced: far fewer events than cat() calls.
                self.assertLess(len(chunks), 1000, f"{len(chunks)} stdout events")

    def test_stdout_stderr_and_tool_call_order(self):
        events = []
        s = self.session(tools=[Tool("mark", lambda: events.append("tool") or True)])
        s.execute('cat("a\\n"); message("b"); cat("c\\n"); invisible(mark()); cat("d\\n")',
                  on_stdout=lambda t: events.append("out:" + t), on_stderr=lambda t: events.append("err:" + t))
        self.assertEqual(events, ["out:a\n", "err:b\n", "out:c\n", "tool", "out:d\n"])

    def test_threads_on_two_sessions(self):
        sessions = [self.session(), self.session()]
        errors, results = [], {}

        def work(k, s):
            try:
                out = []
                for i in range(15):
                    chunks = []
                    r = s.execute(f'cat(rep("{k}", 50), sep = "\\n"); invisible({k}000L + {i}L)',
                                  on_stdout=chunks.append)
                    out.append((r.value, "".join(chunks).splitlines().count(str(k))))
                results[k] = out
            except Exception as e:  # reported below
                errors.append(e)

        threads = [threading.Thread(target=work, args=(k, s)) for k, s in zip((1, 2), sessions)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        self.assertEqual(errors, [])
        for k in (1, 2):
            self.assertEqual(results[k], [(k * 1000 + i, 50) for i in range(15)])

    def test_pool_runs_concurrently(self):
        pool = self.client.create_pool(2)
        self.addCleanup(pool.close)
        t0 = time.monotonic()
        execs = [pool.submit("Sys.sleep(1); Sys.getpid()") for _ in range(2)]
        rs = [e.result(60) for e in execs]
        self.assertLess(time.monotonic() - t0, 1.9)
        self.assertTrue(all(r.verdict == "ok" for r in rs))
        busy = pool.submit("Sys.sleep(1)")
        busy2 = pool.submit("Sys.sleep(1)")
        time.sleep(0.3)
        with self.assertRaises(PoolBusyError):
            pool.execute("1", acquire_timeout=0)
        busy.result(30), busy2.result(30)
        self.assertEqual(pool.status()["total"], 2)

    def test_cancellation_of_a_slow_tool(self):
        def slow():
            time.sleep(5)
            return 1

        s = self.session(tools=[Tool("slow", slow)])
        t0 = time.monotonic()
        r = s.execute("slow()", timeout=2)
        took = time.monotonic() - t0
        self.assertEqual(r.verdict, "timeout")
        self.assertLess(took, 4, "execute() waited for the tool")
        self.assertEqual([ev["reason"] for ev in r.tool_cancelled], ["timeout"], "no tool_cancelled seen")
        # The session works on, and the late answer (refused not_found) is ignored.
        time.sleep(3.5)
        self.assertEqual(s.execute("2L").value, 2)
        self.assertEqual(self.client.tool_errors, [])

    def test_cancel(self):
        s = self.session()
        ex = s.submit("Sys.sleep(30)")
        time.sleep(0.5)
        t0 = time.monotonic()
        ex.cancel()
        self.assertEqual(ex.result(20).verdict, "canceled")
        self.assertLess(time.monotonic() - t0, 5)
        ex.cancel()  # ended already: nothing happens

    def test_one_shot(self):
        r = self.client.run("x <- 41; x + 1", timeout=10)
        self.assertEqual((r.verdict, r.value), ("ok", 42.0))
        self.assertIsInstance(r.warm, bool)
        r = self.client.run('exists("x")')
        self.assertEqual(r.value, False)  # nothing kept
        r = self.client.run("add(1, 2)", tools=[Tool("add", lambda a, b: a + b, args={"a": "", "b": ""})])
        self.assertEqual(r.value, 3.0)

    def test_files_and_plots(self):
        s = self.session()
        s.put_file("in.txt", "hi\n")
        r = s.execute('writeLines(toupper(readLines("in.txt")), "out.txt"); plot(1:3)', outputs=True,
                      plots={"format": "svg"})
        self.assertEqual(r["files"], {"out.txt": b"HI\n"})
        self.assertEqual(s.list_files(), {"in.txt": 3, "out.txt": 3})
        self.assertEqual(r["displays"][0]["data"].keys(), {"image/svg+xml"})

    def test_errors(self):
        with self.assertRaises(InvalidConfigError):
            self.client.create_session(tools=[Tool("bad name", lambda: 1)])
        s = self.session(max_code_bytes=10)
        with self.assertRaises(RejectedError):
            s.execute("x <- 1 + 2 + 3 + 4")
        with self.assertRaises(FileRefusedError):
            s.get_file("../etc/passwd")
        s2 = self.client.create_session()
        s2.close()
        with self.assertRaises(NotFoundError) as cm:
            s2.execute("1")
        self.assertEqual(cm.exception.code, "not_found")
        with self.assertRaises(NotFoundError):
            s2.restart()


class AsyncTest(unittest.TestCase):
    def test_asyncio(self):
        d = Daemon()
        try:
            async def main():
                async def double(x):  # a coroutine tool runs on this loop
                    await asyncio.sleep(0.01)
                    return x * 2

                client = await AsyncClient.open("unix:" + d.socket)
                async with client:
                    s = await client.create_session(tools=[Tool("double", double, args={"x": "integer"})])
                    got = []
                    a, b = await asyncio.gather(s.execute("double(21L)"),
                                                s.execute('cat("x\\n"); invisible(1L)', on_stdout=got.append))
                    await s.close()
                    return a.value, b.value, got

            self.assertEqual(asyncio.run(main()), (42, 1, ["x\n"]))
        finally:
            left = d.stop()
        self.assertEqual(left, [])


class DrainTest(unittest.TestCase):
    def test_draining_is_reported_as_such(self):
        d = Daemon()
        try:
            c = d.client()
            s = c.create_session()
            running = s.submit("Sys.sleep(2); 7L")
            time.sleep(0.5)
            d.proc.send_signal(signal.SIGTERM)
            time.sleep(0.3)
            with self.assertRaises(DrainingError) as cm:
                c.create_session()
            self.assertEqual(cm.exception.code, "draining")
            self.assertEqual(running.result(30).value, 7)  # what ran finishes within the grace
            c.close()
        finally:
            left = d.stop()
        self.assertEqual(left, [])


class TCPTest(unittest.TestCase):
    def test_tcp_with_token(self):
        d = Daemon(tcp=True)
        try:
            with self.assertRaises(UnauthorizedError):
                Client.connect_tcp("127.0.0.1", d.port, token="x" * 64)
            with d.client() as c, c.create_session() as s:
                self.assertEqual(s.execute("1L + 1L").value, 2)
        finally:
            left = d.stop()
        self.assertEqual(left, [])


class SpawnTest(unittest.TestCase):
    def test_spawn_stdio(self):
        state = tempfile.mkdtemp(prefix="securer-pytest-")
        cg = "/securer-pytest-" + secrets.token_hex(4)
        try:
            with Client.spawn([BINARY, "serve", "--stdio", "--state", state, "--cgroup-parent", cg]) as c:
                with c.create_session() as s:
                    self.assertEqual(s.execute("c(a = 1L)").value.to_dict(), {"a": 1})
        finally:
            subprocess.run([BINARY, "reap", "--state", state, "--cgroup-parent", cg],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            shutil.rmtree(state, ignore_errors=True)


if __name__ == "__main__":
    unittest.main()
