package storage

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"os"
)

// checkPages walks every page reachable in a bbolt file, reading it with
// plain reads, and checks that every page, element, key and value lies
// inside the page that holds it and inside the file. bbolt trusts those
// numbers: a damaged offset makes it slice past its memory map, and when
// that happens in the goroutine its consistency check (and the freelist
// rebuild of every writable open) runs in, the process dies with a
// runtime trace that no recover reaches. After this walk, what bbolt
// meets is at worst keys out of order or bytes that fail their seal,
// which it and verifyState report as errors.
//
// The layout is bbolt's file format (version 2): little-endian, a 16-byte
// page header (id, flags, count, overflow), 16-byte branch elements (pos,
// ksize, pgid) and leaf elements (flags, pos, ksize, vsize), whose key
// and value sit pos bytes after the element.
func checkPages(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	w := pageWalker{f: f, size: fi.Size(), seen: map[uint64]bool{}}
	m, err := w.meta()
	if err != nil {
		return err
	}
	w.pageSize, w.highWater = int64(m.pageSize), m.pgid
	if want := int64(m.pgid) * int64(m.pageSize); fi.Size() < want {
		return fmt.Errorf("truncated: %d bytes, but its metadata says %d", fi.Size(), want)
	}
	if m.freelist != noFreelist {
		if err := w.checkFreelist(m.freelist); err != nil {
			return err
		}
	}
	return w.tree(m.root, 0)
}

const (
	bboltMagic      = 0xED0CDAED
	bboltVersion    = 2
	pageHeaderLen   = 16
	elementLen      = 16
	branchPageFlag  = 0x01
	leafPageFlag    = 0x02
	freelistFlag    = 0x10
	bucketLeafFlag  = 0x01
	bucketHeaderLen = 16 // root pgid, sequence
	noFreelist      = ^uint64(0)
	// maxTreeDepth bounds the walk: a tree of 4 KiB pages this deep
	// would hold more keys than a file can.
	maxTreeDepth = 64
)

type bboltMeta struct {
	pageSize                   uint32
	root, freelist, pgid, txid uint64
	valid                      bool
}

type pageWalker struct {
	f         io.ReaderAt
	size      int64
	pageSize  int64
	highWater uint64
	seen      map[uint64]bool
}

// meta reads both meta pages and picks the valid one with the higher
// transaction id, as bbolt does. The second sits one page in; if the
// first is damaged, its page size is unknown and the usual ones are
// tried.
func (w *pageWalker) meta() (bboltMeta, error) {
	best := w.readMeta(0)
	sizes := []int64{4096, 8192, 16384, 65536}
	if best.valid {
		sizes = []int64{int64(best.pageSize)}
	}
	for _, ps := range sizes {
		if m := w.readMeta(ps); m.valid && (!best.valid || m.txid > best.txid) {
			best = m
			break
		}
	}
	if !best.valid {
		return best, errors.New("no valid meta page")
	}
	if best.pageSize < 512 || best.pageSize > 1<<20 || best.pageSize&(best.pageSize-1) != 0 {
		return best, fmt.Errorf("a page size of %d", best.pageSize)
	}
	return best, nil
}

// readMeta reads the meta page at off; valid says whether its magic,
// version and checksum (FNV-64a of the fields before it) hold.
func (w *pageWalker) readMeta(off int64) bboltMeta {
	buf := make([]byte, pageHeaderLen+64)
	if _, err := w.f.ReadAt(buf, off); err != nil {
		return bboltMeta{}
	}
	b := buf[pageHeaderLen:]
	le := binary.LittleEndian
	h := fnv.New64a()
	h.Write(b[:56])
	return bboltMeta{
		pageSize: le.Uint32(b[8:]),
		root:     le.Uint64(b[16:]), freelist: le.Uint64(b[32:]), pgid: le.Uint64(b[40:]), txid: le.Uint64(b[48:]),
		valid: le.Uint32(b[0:]) == bboltMagic && le.Uint32(b[4:]) == bboltVersion && h.Sum64() == le.Uint64(b[56:]),
	}
}

// page reads page id with its overflow pages.
func (w *pageWalker) page(id uint64) ([]byte, error) {
	if id < 2 || id >= w.highWater {
		return nil, fmt.Errorf("a reference to page %d, outside the file's %d pages", id, w.highWater)
	}
	hdr := make([]byte, pageHeaderLen)
	if _, err := w.f.ReadAt(hdr, int64(id)*w.pageSize); err != nil {
		return nil, fmt.Errorf("page %d: %v", id, err)
	}
	if got := binary.LittleEndian.Uint64(hdr); got != id {
		return nil, fmt.Errorf("page %d carries the id %d", id, got)
	}
	overflow := uint64(binary.LittleEndian.Uint32(hdr[12:]))
	if id+overflow >= w.highWater || int64(id+overflow+1)*w.pageSize > w.size {
		return nil, fmt.Errorf("page %d runs past the end of the file (%d overflow pages)", id, overflow)
	}
	p := make([]byte, int64(overflow+1)*w.pageSize)
	if _, err := w.f.ReadAt(p, int64(id)*w.pageSize); err != nil {
		return nil, fmt.Errorf("page %d: %v", id, err)
	}
	return p, nil
}

func (w *pageWalker) checkFreelist(id uint64) error {
	p, err := w.page(id)
	if err != nil {
		return fmt.Errorf("freelist: %w", err)
	}
	if binary.LittleEndian.Uint16(p[8:])&freelistFlag == 0 {
		return fmt.Errorf("freelist page %d is not a freelist page", id)
	}
	n, start := uint64(binary.LittleEndian.Uint16(p[10:])), uint64(pageHeaderLen)
	if n == 0xFFFF {
		if len(p) < pageHeaderLen+8 {
			return fmt.Errorf("freelist page %d is cut short", id)
		}
		n, start = binary.LittleEndian.Uint64(p[pageHeaderLen:]), pageHeaderLen+8
	}
	if start+n*8 > uint64(len(p)) {
		return fmt.Errorf("freelist page %d lists %d pages it cannot hold", id, n)
	}
	return nil
}

// tree checks the bucket tree whose root is page id.
func (w *pageWalker) tree(id uint64, depth int) error {
	if depth > maxTreeDepth {
		return fmt.Errorf("page %d: the tree is deeper than %d levels", id, maxTreeDepth)
	}
	if w.seen[id] {
		return fmt.Errorf("page %d is referenced twice", id)
	}
	w.seen[id] = true
	p, err := w.page(id)
	if err != nil {
		return err
	}
	return w.elements(p, id, depth)
}

// elements checks the elements of page p (a page of the file, or a
// bucket's inline page) and descends into its children.
func (w *pageWalker) elements(p []byte, id uint64, depth int) error {
	le := binary.LittleEndian
	if len(p) < pageHeaderLen {
		return fmt.Errorf("page %d is cut short", id)
	}
	flags, count := le.Uint16(p[8:]), int(le.Uint16(p[10:]))
	if pageHeaderLen+count*elementLen > len(p) {
		return fmt.Errorf("page %d claims %d elements", id, count)
	}
	for i := range count {
		e := pageHeaderLen + i*elementLen
		switch flags {
		case branchPageFlag:
			pos, ksize := uint64(le.Uint32(p[e:])), uint64(le.Uint32(p[e+4:]))
			if uint64(e)+pos+ksize > uint64(len(p)) {
				return fmt.Errorf("page %d: branch element %d points past its page", id, i)
			}
			if err := w.tree(le.Uint64(p[e+8:]), depth+1); err != nil {
				return err
			}
		case leafPageFlag:
			eflags := le.Uint32(p[e:])
			pos, ksize, vsize := uint64(le.Uint32(p[e+4:])), uint64(le.Uint32(p[e+8:])), uint64(le.Uint32(p[e+12:]))
			end := uint64(e) + pos + ksize + vsize
			if end > uint64(len(p)) {
				return fmt.Errorf("page %d: leaf element %d points past its page", id, i)
			}
			if eflags&bucketLeafFlag == 0 {
				continue
			}
			v := p[uint64(e)+pos+ksize : end]
			if len(v) < bucketHeaderLen {
				return fmt.Errorf("page %d: bucket %d has a cut-short header", id, i)
			}
			if root := le.Uint64(v); root != 0 {
				if err := w.tree(root, depth+1); err != nil {
					return err
				}
			} else if err := w.elements(v[bucketHeaderLen:], id, depth+1); err != nil {
				return err
			}
		default:
			return fmt.Errorf("page %d has the unexpected type %#x", id, flags)
		}
	}
	return nil
}
