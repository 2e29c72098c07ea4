"""The agent of the sidecar end-to-end test: a client in its own container
that reaches the sidecar only through the socket in the shared emptyDir.

    agent.py call    R code calls a tool answered here; prints JSON lines
    agent.py drain   starts a slow execution, says so, prints its result

SECURER_ADDR is unix:PATH, as deploy/kubernetes/pod.yaml sets it."""

import json
import os
import sys

sys.path.insert(0, "/client/lib")
from securer_client import Client, Tool  # noqa: E402

addr = os.environ["SECURER_ADDR"]
if not addr.startswith("unix:"):
    sys.exit(f"agent: SECURER_ADDR must be unix:PATH, got {addr!r}")
mode = sys.argv[1] if len(sys.argv) > 1 else "call"

calls = []


def add(a, b):
    calls.append([a, b])
    return a + b


def report(what, r):
    print(json.dumps({"what": what, "verdict": r["verdict"], "value": r.get("value_plain"),
                      "stdout": r.get("stdout", ""), "state_lost": r.get("state_lost")}), flush=True)


with Client.connect(addr[len("unix:"):]) as client:
    print(json.dumps({"what": "hello", "sandboxed": client.hello.get("sandboxed"),
                      "uid": os.getuid(), "groups": sorted(os.getgroups())}), flush=True)
    session = client.create_session(tools=[Tool("add", add, args={"a": "numeric", "b": "numeric"})], timeout=60)
    if mode == "call":
        report("tool", session.execute("add(2, 3) * 10"))
        report("box_uid", session.execute('file.info("/proc/self")$uid'))
        # A timeout interrupts R (the sidecar signals the box's processes):
        # the session keeps its state.
        session.execute("kept <- 7")
        report("timeout", session.execute("Sys.sleep(60)", timeout=2))
        report("after_timeout", session.execute("kept"))
        # Fresh executions: the sidecar sweeps the box after each (files,
        # an unreadable directory, a System V object) with the manifest's
        # capabilities, and keeps the box (its state stays).
        session.execute('writeLines("x", "/tmp/left"); dir.create("/tmp/d/e", recursive = TRUE); '
                        'Sys.chmod("/tmp/d", "000"); system("ipcmk -M 4096 >/dev/null")', fresh=True)
        report("fresh_clean", session.execute(
            '!file.exists("/tmp/left") && !dir.exists("/tmp/d") && length(readLines("/proc/sysvipc/shm")) == 1',
            fresh=True))
        report("after_fresh", session.execute("kept"))
        print(json.dumps({"what": "calls", "calls": calls}), flush=True)
    elif mode == "drain":
        # The test sends SIGTERM once it reads "executing"; the execution
        # started before it must still finish with its value.
        print(json.dumps({"what": "executing"}), flush=True)
        report("drain", session.execute("Sys.sleep(4); add(40, 2)"))
        # The drained server ends: closing now finds the connection gone.
        try:
            session.close()
            print(json.dumps({"what": "after_drain", "closed_by_server": False}), flush=True)
        except ConnectionError:
            print(json.dumps({"what": "after_drain", "closed_by_server": True}), flush=True)
        sys.exit(0)
    else:
        sys.exit(f"agent: unknown mode {mode!r}")
    session.close()
