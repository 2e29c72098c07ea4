package mcpserver

import (
	"strings"
	"testing"
	"time"
)

func TestBlobStoreBoundsAndExpiry(t *testing.T) {
	now := time.Unix(1000, 0)
	b := newBlobStore(2, 10, time.Minute)
	b.now = func() time.Time { return now }

	u1 := b.put("aaaa")
	u2 := b.put("bbbb")
	if u1 == u2 || !strings.HasPrefix(u1, outputURIPrefix) || len(u1) != len(outputURIPrefix)+32 {
		t.Fatalf("uris %q %q: want distinct, prefixed, 128-bit ids", u1, u2)
	}
	u3 := b.put("cccc") // over 2 items: the oldest goes
	if _, ok := b.get(u1); ok {
		t.Error("oldest kept past the item bound")
	}
	if got, ok := b.get(u3); !ok || got != "cccc" {
		t.Errorf("newest: %q %v", got, ok)
	}
	u4 := b.put("dddddddd") // 4+8 > 10 bytes: u2 and u3 go
	if _, ok := b.get(u2); ok {
		t.Error("kept past the byte bound")
	}
	if b.bytes != 8 || len(b.order) != 1 {
		t.Errorf("bytes %d entries %d, want 8 and 1", b.bytes, len(b.order))
	}
	if b.put(strings.Repeat("x", 11)) != "" {
		t.Error("a text over the whole bound was kept")
	}
	now = now.Add(time.Minute)
	if _, ok := b.get(u4); ok {
		t.Error("expired entry still served")
	}
	if b.bytes != 0 {
		t.Errorf("bytes %d after expiry", b.bytes)
	}
}
