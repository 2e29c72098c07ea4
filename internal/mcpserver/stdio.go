package mcpserver

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"sync"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// parseErrorLine is JSON-RPC's answer to a message that is not JSON: the
// request's id cannot be known, so it is null.
const parseErrorLine = `{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"Parse error: the line is not JSON"}}` + "\n"

// guardedTransport is the stdio transport with one difference: a line
// that is not JSON is answered with a parse error (-32700) and skipped,
// as JSON-RPC asks, where the SDK's own transport ends the session, and
// with it every R session and run in flight. Valid JSON goes to the SDK
// unchanged; blank lines are dropped.
func guardedTransport(in io.Reader, out io.Writer) *mcp.IOTransport {
	w := &lockedWriter{w: out}
	pr, pw := io.Pipe()
	go func() {
		sc := bufio.NewScanner(in)
		sc.Buffer(make([]byte, 0, 64<<10), mcp.DefaultMaxLineLength)
		for sc.Scan() {
			line := sc.Bytes()
			switch {
			case len(bytes.TrimSpace(line)) == 0:
				continue
			case !json.Valid(line):
				if _, err := w.Write([]byte(parseErrorLine)); err != nil {
					pw.CloseWithError(err)
					return
				}
				continue
			}
			if _, err := pw.Write(append(line, '\n')); err != nil {
				return // the SDK closed its end: the session is over
			}
		}
		// nil at the end of input: the reader then sees io.EOF. A line over
		// the SDK's own bound ends the session, as it would have.
		pw.CloseWithError(sc.Err())
	}()
	return &mcp.IOTransport{Reader: pr, Writer: w}
}

// lockedWriter serializes the SDK's messages and the parse errors: each
// is one Write, so lines never interleave. Closing it leaves the
// underlying writer (stdout) open, as the SDK's own stdio transport does.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func (l *lockedWriter) Close() error { return nil }
