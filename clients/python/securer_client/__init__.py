"""A client for `securer-runc serve` (PROTOCOL.md), standard library only.

The server runs R code in sandboxes; R code calls tools, which this client
answers with Python functions.

    from securer_client import Client, Tool

    with Client.connect() as client:   # SECURER_SOCKET, else /run/securer-runc/serve.sock;
                                       # or Client.spawn(), Client.connect_tcp(host, port, token)
        add = Tool("add", lambda a, b: a + b, args={"a": "numeric", "b": "numeric"})
        session = client.create_session(tools=[add])
        result = session.execute("add(2, 3)")
        print(result.value)                      # 5.0 (result["value_plain"]: 5)
        print(client.run("1 + 1").value)         # a one-shot: fresh box, nothing kept

A Client may be used from several threads at once. Values: see
securer_client.values; errors: securer_client.errors (one class per
error code); asyncio: securer_client.aio.
"""

from .client import DEFAULT_SOCKET, Client, Execution, Result, Session, Tool, printed_output, result_displays
from .errors import (ERRORS, BadRequestError, BusyError, ClosedError, ConnectionClosed, DrainingError,
                     FileRefusedError, IdleError, InternalError, InvalidConfigError, LimitError, NeedsSandboxError,
                     NotFoundError, PoolBusyError, CanceledError, RejectedError, SandboxUnavailableError, SecurerError, ServerError,
                     StartFailedError, StartTimeoutError, StateLostWarning, UnauthorizedError)
from .values import DataFrame, Factor, RObject, RVector, decode, encode

__version__ = "0.3.0"

__all__ = [
    "DEFAULT_SOCKET", "Client", "Execution", "Result", "Session", "Tool", "printed_output", "result_displays",
    "ERRORS", "BadRequestError", "BusyError", "ClosedError", "ConnectionClosed", "DrainingError", "FileRefusedError",
    "IdleError", "InternalError", "InvalidConfigError", "LimitError", "NeedsSandboxError", "NotFoundError",
    "CanceledError", "PoolBusyError", "RejectedError", "SandboxUnavailableError", "SecurerError", "ServerError", "StartFailedError",
    "StartTimeoutError", "StateLostWarning", "UnauthorizedError",
    "DataFrame", "Factor", "RObject", "RVector", "decode", "encode",
]
