package mcpserver

import (
	"crypto/rand"
	"encoding/hex"
	"sync"
	"time"
)

// outputScheme is the URI scheme of the resources the server mints for
// output too large to inline.
const outputScheme = "securer-runc"

// outputURIPrefix starts every minted output URI; the rest is a random id.
const outputURIPrefix = outputScheme + "://output/"

// blobStore keeps the whole text of large outputs for a while, so that a
// client can fetch by resources/read what a tool result cut. It is bounded
// in entries and bytes (the oldest go first) and entries expire.
type blobStore struct {
	mu       sync.Mutex
	ttl      time.Duration
	maxItems int
	maxBytes int
	now      func() time.Time
	items    map[string]blob
	order    []string // insertion order, oldest first
	bytes    int
}

type blob struct {
	text    string
	expires time.Time
}

func newBlobStore(maxItems, maxBytes int, ttl time.Duration) *blobStore {
	return &blobStore{ttl: ttl, maxItems: maxItems, maxBytes: maxBytes, now: time.Now, items: map[string]blob{}}
}

// put keeps text and returns its URI, or "" when text alone is over the
// store's byte bound (it would evict everything and still not fit).
func (b *blobStore) put(text string) string {
	if len(text) > b.maxBytes {
		return ""
	}
	uri := outputURIPrefix + randomID()
	b.mu.Lock()
	defer b.mu.Unlock()
	b.expireLocked()
	for len(b.order) > 0 && (len(b.order) >= b.maxItems || b.bytes+len(text) > b.maxBytes) {
		b.dropLocked(b.order[0])
	}
	b.items[uri] = blob{text: text, expires: b.now().Add(b.ttl)}
	b.order = append(b.order, uri)
	b.bytes += len(text)
	return uri
}

// get returns the text kept under uri, if it is still there.
func (b *blobStore) get(uri string) (string, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.expireLocked()
	it, ok := b.items[uri]
	return it.text, ok
}

func (b *blobStore) expireLocked() {
	now := b.now()
	for len(b.order) > 0 && !now.Before(b.items[b.order[0]].expires) {
		b.dropLocked(b.order[0])
	}
}

func (b *blobStore) dropLocked(uri string) {
	it, ok := b.items[uri]
	if !ok {
		return
	}
	delete(b.items, uri)
	b.bytes -= len(it.text)
	for i, u := range b.order {
		if u == uri {
			b.order = append(b.order[:i], b.order[i+1:]...)
			break
		}
	}
}

// randomID is 128 random bits in hex: unguessable, so that a URI or a
// session handle is itself the capability to use it.
func randomID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	return hex.EncodeToString(b[:])
}
