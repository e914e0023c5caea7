package apple

import (
	"archive/zip"
	"bytes"
	"compress/flate"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"io"
	"slices"
	"strings"
	"time"
)

// Assets are the files of a pass that do not change from one person to
// the next (images, localisations), prepared once: hashed for the manifest
// and deflated for the archive. Building a pass from Assets costs one
// pass.json, one manifest and one signature; the images are copied, not
// compressed again.
type Assets struct {
	files []asset
}

type asset struct {
	name       string
	sha1       string
	crc        uint32
	size       int
	compressed []byte
}

// NewAssets checks and prepares files, keyed by slash-separated relative
// path ("icon.png", "es.lproj/pass.strings").
func NewAssets(files map[string][]byte) (*Assets, error) {
	a := &Assets{files: make([]asset, 0, len(files))}
	for name, b := range files {
		if err := checkFileName(name); err != nil {
			return nil, fmt.Errorf("pass assets: %w", err)
		}
		var buf bytes.Buffer
		fw, err := flate.NewWriter(&buf, flate.BestCompression)
		if err != nil {
			return nil, fmt.Errorf("pass assets: %w", err)
		}
		if _, err := fw.Write(b); err != nil {
			return nil, fmt.Errorf("pass assets: deflate %s: %w", name, err)
		}
		if err := fw.Close(); err != nil {
			return nil, fmt.Errorf("pass assets: deflate %s: %w", name, err)
		}
		a.files = append(a.files, asset{name: name, sha1: sha1Hex(b), crc: crc32.ChecksumIEEE(b), size: len(b), compressed: buf.Bytes()})
	}
	slices.SortFunc(a.files, func(x, y asset) int { return strings.Compare(x.name, y.name) })
	return a, nil
}

// Names lists the files, sorted.
func (a *Assets) Names() []string {
	out := make([]string, len(a.files))
	for i, f := range a.files {
		out[i] = f.name
	}
	return out
}

// Has reports whether the assets hold a file of that name.
func (a *Assets) Has(name string) bool {
	_, ok := slices.BinarySearchFunc(a.files, name, func(f asset, n string) int { return strings.Compare(f.name, n) })
	return ok
}

// File returns the contents of the file name ("logo@2x.png"), or nil
// when there is none.
func (a *Assets) File(name string) []byte {
	i, ok := slices.BinarySearchFunc(a.files, name, func(f asset, n string) int { return strings.Compare(f.name, n) })
	if !ok {
		return nil
	}
	b, err := io.ReadAll(flate.NewReader(bytes.NewReader(a.files[i].compressed)))
	if err != nil || len(b) != a.files[i].size {
		return nil // deflated by NewAssets: cannot fail
	}
	return b
}

// Build returns a signed .pkpass of p with these assets; see [Build].
func (a *Assets) Build(p Pass, chain *Chain, now time.Time) ([]byte, error) {
	if chain == nil || chain.Cert == nil || chain.Key == nil || chain.WWDR == nil {
		return nil, fmt.Errorf("build pass: incomplete chain")
	}
	if err := checkValidity(chain, now); err != nil {
		return nil, fmt.Errorf("build pass: %w", err)
	}
	passJSON, err := passJSON(p, chain)
	if err != nil {
		return nil, fmt.Errorf("build pass: %w", err)
	}
	manifest := a.manifest(passJSON)
	sig, err := sign(manifest, chain)
	if err != nil {
		return nil, fmt.Errorf("build pass: sign: %w", err)
	}

	size := len(passJSON) + len(manifest) + len(sig) + 512
	for _, f := range a.files {
		size += len(f.compressed) + 2*len(f.name) + 100
	}
	buf := bytes.NewBuffer(make([]byte, 0, size))
	zw := zip.NewWriter(buf)
	for _, f := range []struct {
		name string
		b    []byte
	}{{PassFile, passJSON}, {ManifestFile, manifest}, {SignatureFile, sig}} {
		// Small and unique per pass: stored, not deflated.
		w, err := zw.CreateHeader(&zip.FileHeader{Name: f.name, Method: zip.Store, Modified: now})
		if err == nil {
			_, err = w.Write(f.b)
		}
		if err != nil {
			return nil, fmt.Errorf("build pass: zip: %w", err)
		}
	}
	for _, f := range a.files {
		w, err := zw.CreateRaw(&zip.FileHeader{
			Name: f.name, Method: zip.Deflate, Modified: now,
			CRC32: f.crc, CompressedSize64: uint64(len(f.compressed)), UncompressedSize64: uint64(f.size),
		})
		if err == nil {
			_, err = w.Write(f.compressed)
		}
		if err != nil {
			return nil, fmt.Errorf("build pass: zip: %w", err)
		}
	}
	if err := zw.Close(); err != nil {
		return nil, fmt.Errorf("build pass: zip: %w", err)
	}
	return buf.Bytes(), nil
}

// manifest writes manifest.json: {"name": "sha1", ...} with sorted keys,
// as encoding/json would, without building a map per pass.
func (a *Assets) manifest(passJSON []byte) []byte {
	type entry struct{ name, sum string }
	entries := make([]entry, 0, len(a.files)+1)
	entries = append(entries, entry{PassFile, sha1Hex(passJSON)})
	for _, f := range a.files {
		entries = append(entries, entry{f.name, f.sha1})
	}
	slices.SortFunc(entries, func(x, y entry) int { return strings.Compare(x.name, y.name) })
	var b bytes.Buffer
	b.WriteString("{\n")
	for i, e := range entries {
		name, _ := json.Marshal(e.name) // a string always marshals
		b.WriteString("  ")
		b.Write(name)
		b.WriteString(`: "`)
		b.WriteString(e.sum)
		b.WriteByte('"')
		if i < len(entries)-1 {
			b.WriteByte(',')
		}
		b.WriteByte('\n')
	}
	b.WriteString("}")
	return b.Bytes()
}
