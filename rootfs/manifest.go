package rootfs

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"reflect"
	"strings"
	"time"
)

// ManifestFormat is the only manifest "format" this package understands.
const ManifestFormat = 1

// maxManifestSize bounds what LoadManifest reads; a real one is < 1 KiB.
const maxManifestSize = 1 << 20

// Manifest is DIR/manifest.json as written by scripts/build-rootfs.sh.
// Field order matches the script so a re-written manifest diffs cleanly.
type Manifest struct {
	Format    int       `json:"format"`
	Suite     string    `json:"suite"`     // Debian suite, e.g. "bookworm"
	RVersion  string    `json:"r_version"` // Debian version of r-base-core
	Packages  []Package `json:"packages"`  // every installed r-* package
	Requested string    `json:"requested"` // packages asked for, space-separated
	BuildDate time.Time `json:"build_date"`
	BuildKey  string    `json:"build_key"` // hash of script, suite, packages
	SizeBytes int64     `json:"size_bytes"`
	Digest    string    `json:"digest"` // "sha256:<hex>" from Seal; "" until sealed
}

// Package is one installed Debian package.
type Package struct {
	Name    string `json:"name"`
	Version string `json:"version"`
}

// LoadManifest reads and strictly decodes DIR/manifest.json: unknown or
// duplicate fields, trailing data, an unknown format or a malformed digest
// are errors (wrapping ErrInvalid); a missing file wraps ErrNotBuilt.
func LoadManifest(dir string) (*Manifest, error) {
	m, _, err := readManifest(dir)
	return m, err
}

// readManifest also returns the raw bytes so Seal can detect a concurrent
// rewrite before replacing the file.
func readManifest(dir string) (*Manifest, []byte, error) {
	path := ManifestPath(dir)
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil, fmt.Errorf("%w: %s is missing", ErrNotBuilt, path)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("read manifest: %w", err)
	}
	defer f.Close()
	raw, err := io.ReadAll(io.LimitReader(f, maxManifestSize+1))
	if err != nil {
		return nil, nil, fmt.Errorf("read manifest %s: %w", path, err)
	}
	if len(raw) > maxManifestSize {
		return nil, nil, fmt.Errorf("%w: manifest %s is larger than %d bytes; rebuild it (%s)",
			ErrInvalid, path, maxManifestSize, rebuildHint)
	}
	m, err := parseManifest(raw)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: manifest %s: %w; rebuild it (%s)", ErrInvalid, path, err, rebuildHint)
	}
	return m, raw, nil
}

func parseManifest(raw []byte) (*Manifest, error) {
	// encoding/json alone accepts duplicate keys and matches names
	// case-insensitively; strictKeys closes both gaps first.
	if err := strictKeys(raw); err != nil {
		return nil, err
	}
	var m Manifest
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return nil, err
	}
	if m.Format != ManifestFormat {
		return nil, fmt.Errorf("format %d is not supported (want %d)", m.Format, ManifestFormat)
	}
	if m.RVersion == "" {
		return nil, errors.New("r_version is empty")
	}
	if m.Digest != "" && !validDigest(m.Digest) {
		return nil, fmt.Errorf("digest %q is not sha256:<64 lowercase hex>", m.Digest)
	}
	return &m, nil
}

// encodeManifest keeps the script's layout where it matters: two-space
// indent and `"key": value`, which the script greps for build_key.
func encodeManifest(m *Manifest) ([]byte, error) {
	c := *m
	if c.Packages == nil {
		c.Packages = []Package{} // the script always writes an array
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(&c); err != nil { // Encode appends the final newline
		return nil, err
	}
	return buf.Bytes(), nil
}

func validDigest(s string) bool {
	const prefix = "sha256:"
	if len(s) != len(prefix)+64 || s[:len(prefix)] != prefix {
		return false
	}
	for _, c := range []byte(s[len(prefix):]) {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// strictKeys walks the JSON tokens of a manifest and rejects duplicate keys,
// keys that are not exactly a json tag of Manifest (top level) or Package
// (inside "packages"), and anything after the top-level value.
func strictKeys(raw []byte) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	allowed := map[string]map[string]bool{
		"":           jsonKeys(reflect.TypeFor[Manifest]()),
		"packages[]": jsonKeys(reflect.TypeFor[Package]()),
	}
	if err := walkJSON(dec, "", allowed); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("trailing data after the JSON object")
	}
	return nil
}

func walkJSON(dec *json.Decoder, at string, allowed map[string]map[string]bool) error {
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	switch tok {
	case json.Delim('{'):
		keys := allowed[at]
		seen := make(map[string]bool, len(keys))
		for dec.More() {
			tok, err := dec.Token()
			if err != nil {
				return err
			}
			k := tok.(string) // the decoder only yields string keys here
			where := strings.TrimPrefix(at+"."+k, ".")
			if !keys[k] {
				return fmt.Errorf("unknown field %q", where)
			}
			if seen[k] {
				return fmt.Errorf("duplicate field %q", where)
			}
			seen[k] = true
			if err := walkJSON(dec, where, allowed); err != nil {
				return err
			}
		}
		_, err = dec.Token() // '}'
		return err
	case json.Delim('['):
		for dec.More() {
			if err := walkJSON(dec, at+"[]", allowed); err != nil {
				return err
			}
		}
		_, err = dec.Token() // ']'
		return err
	}
	return nil
}

// jsonKeys returns the json names of a struct's fields.
func jsonKeys(t reflect.Type) map[string]bool {
	keys := make(map[string]bool, t.NumField())
	for f := range t.Fields() {
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		keys[name] = true
	}
	return keys
}
