"""R code in a sandbox calls a tool answered in Python.

Run as root: python3 example.py   (SECURER_RUNC names the binary, default
securer-runc on PATH; SECURER_SERVE_ARGS adds flags to `serve --stdio`).
With SECURER_ADDR=tcp:HOST:PORT (or unix:PATH, e.g. unix:$SECURER_SOCKET
for the daemon the clients use by default) and SECURER_TOKEN it connects
to a running daemon instead. Uses the securer_client package next
to this file (or the one `pip install clients/python` installed)."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from securer_client import Client, FileRefusedError, Tool, printed_output, result_displays  # noqa: E402

binary = os.environ.get("SECURER_RUNC", "securer-runc")
extra = os.environ.get("SECURER_SERVE_ARGS", "").split()


def get_weather(city):
    return {"city": city, "temp": 72, "condition": "sunny"}


def fail(x):
    raise ValueError(f"cannot handle {x}")


tools = [
    Tool("add", lambda a, b: a + b, args={"a": "numeric", "b": "numeric"}, description="Add two numbers"),
    Tool("get_weather", get_weather, args={"city": "character"}, description="Weather for a city"),
    Tool("fail", fail, args={"x": ""}),
]

addr = os.environ.get("SECURER_ADDR", "")
if addr:
    client = Client.open(addr)
else:
    client = Client.spawn([binary, "serve", "--stdio", *extra])

with client:
    session = client.create_session(tools=tools, timeout=10)
    r = session.execute("add(2, 3)")
    print("add:", r["verdict"], r["value_plain"])
    r = session.execute('list(n = NULL, f = factor(c("b", "a", "b")), d = as.Date("2024-02-29"), v = c(x = 1, y = NA))')
    print("values:", r.value["n"], list(r.value["f"]), r.value["f"].levels, r.value["d"], r.value["v"].names,
          list(r.value["v"]))
    r = session.execute('w <- get_weather("Boston"); paste(w$city, w$temp, w$condition)')
    print("weather:", r["value_plain"])
    r = session.execute('tryCatch(fail(1L), error = function(e) conditionMessage(e))')
    print("tool error:", r["value_plain"])
    lines = []
    r = session.execute('for (i in 1:3) cat("line", i, "\\n"); Sys.info()[["nodename"]]', on_stdout=lines.append)
    print("streamed:", "".join(lines).split("\n")[:3], "hostname:", r["value_plain"])
    r = session.execute("plot(1:10); hist(c(1, 2, 2))", plots={"width": 640, "height": 480})
    pages = result_displays(r)
    print("plots:", len(pages), [(d["mime"], d["width"], d["height"], d["data"][:4] == b"\x89PNG") for d in pages])
    r = session.execute('cat("before\\n"); summary(c(1, 2, 3))')
    print("output without the print:", repr(printed_output(r)))
    r = session.execute('f <- function() stop("inner"); g <- function() f(); g()')
    print("traceback:", r["error"]["traceback"])
    session.put_file("in/data.csv", "x,y\n1,2\n3,4\n")
    r = session.execute('d <- read.csv("in/data.csv"); write.csv(d * 2, "out.csv", row.names = FALSE); nrow(d)',
                        outputs=True)
    print("files:", r["value_plain"], sorted(r["files"]), session.get_file("out.csv") == r["files"]["out.csv"],
          session.list_files())
    r = session.execute('writeLines(toupper(readLines("note.txt")), "shout.txt")', inputs={"note.txt": b"hello\n"},
                        fresh=True, outputs=True)
    print("inputs:", r["files"])
    try:
        session.get_file("../x")
    except FileRefusedError as e:
        print("refused:", e.code)
    r = session.execute("Sys.sleep(5)", timeout=0.5)
    print("timeout:", r["verdict"])
    session.close()
    print("session:", session.info["sandbox"], "pid" if session.info["pid"] > 0 else "no pid")
    big = client.create_session(clamp=True, memory_bytes=1 << 40)  # over the server's --memory: lowered to it
    print("clamped:", big.info["clamped"], big.info["limits"]["memory_bytes"] < 1 << 40)
    big.close()
