package container

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/opencontainers/runc/libcontainer"
	"golang.org/x/sys/unix"
)

// Remove kills and destroys container id under stateRoot, as a host
// process that crashed left it. A container that does not exist is no
// error; a half-written state dir, through which nothing can be killed,
// is removed.
func Remove(ctx context.Context, stateRoot, id string) error {
	c, err := libcontainer.Load(stateRoot, id)
	if err != nil {
		if !errors.Is(err, libcontainer.ErrNotExist) {
			_ = os.RemoveAll(filepath.Join(stateRoot, id))
		}
		return nil
	}
	_ = c.Signal(unix.SIGKILL)
	var derr error
	for i := 0; i < 100; i++ {
		if derr = c.Destroy(); derr == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	return fmt.Errorf("reap %s: %w", id, derr)
}
