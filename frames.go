package securer

import (
	"errors"
	"fmt"
	"time"

	"github.com/securer-runc/securer-runc/bridge"
)

// frame is one message from R, decoded, or why none came.
type frame struct {
	msg any
	err error
}

// readFrames decodes R's frames into out, one at a time, until a frame
// fails or stop is closed.
func readFrames(r *bridge.Reader, out chan<- frame, stop <-chan struct{}) {
	defer close(out)
	for {
		var f frame
		b, err := r.ReadFrame()
		if err == nil {
			f.msg, f.err = bridge.Decode(b)
		} else {
			f.err = err
		}
		select {
		case out <- f:
		case <-stop:
			return
		}
		if f.err != nil {
			return
		}
	}
}

// errEncode marks a host message that could not be encoded: a host-side
// bug or a tool's bad value, never R's fault.
var errEncode = errors.New("encode host message")

func (s *Session) send(inst *instance, msg any) error {
	b, err := bridge.Encode(msg)
	if err != nil {
		return fmt.Errorf("%w: %w", errEncode, err)
	}
	return s.sendFrame(inst, b)
}

// sendFrame writes one encoded message to R.
func (s *Session) sendFrame(inst *instance, b []byte) error {
	_ = inst.conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if _, err := inst.conn.Write(b); err != nil {
		return fmt.Errorf("send to R: %w", err)
	}
	return nil
}
