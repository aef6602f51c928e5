package spool

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

const (
	segExt     = ".seg"
	ackExt     = ".ack"
	idDigits   = 20
	lockName   = "LOCK"
	corruptTag = ".corrupt-"
)

// segment is one append-only file of records and its ack file.
type segment struct {
	id      uint64
	path    string
	f       *os.File // read-write; the forwarder reads with ReadAt
	size    int64    // end of the last whole record
	pending int      // records not yet forwarded
	ack     *os.File // ack file, opened by the forwarder on first use
}

// record is the in-memory index of one spooled, not yet forwarded entry.
// Its data stays on disk until the forwarder reads it.
type record struct {
	seg   *segment
	off   int64
	size  int64
	seq   uint64
	msgID string
	added time.Time
}

func segFile(id uint64) string { return fmt.Sprintf("%0*d%s", idDigits, id, segExt) }
func ackFile(id uint64) string { return fmt.Sprintf("%0*d%s", idDigits, id, ackExt) }

// parseName returns the id of a segment or ack file name, and which it is.
// Any other name (LOCK, moved-aside tails, strangers) is not ours.
func parseName(name string) (id uint64, isSeg, ok bool) {
	var base string
	switch {
	case strings.HasSuffix(name, segExt):
		base, isSeg = strings.TrimSuffix(name, segExt), true
	case strings.HasSuffix(name, ackExt):
		base = strings.TrimSuffix(name, ackExt)
	default:
		return 0, false, false
	}
	if len(base) != idDigits {
		return 0, false, false
	}
	for i := 0; i < len(base); i++ {
		if base[i] < '0' || base[i] > '9' {
			return 0, false, false
		}
	}
	id, err := strconv.ParseUint(base, 10, 64)
	if err != nil {
		return 0, false, false
	}
	return id, isSeg, true
}

// scanned is one whole record found by scanSegment.
type scanned struct {
	off, size int64
	msgID     string
	added     time.Time
}

// scanSegment reads f (size bytes long) from the start and returns every
// whole, valid record up to the first one that is not, and the offset where
// the good prefix ends. Only an I/O error is an error; a bad record is just
// the end of the good prefix.
func scanSegment(f *os.File, size int64) ([]scanned, int64, error) {
	r := bufio.NewReaderSize(io.NewSectionReader(f, 0, size), 1<<20)
	var (
		recs []scanned
		off  int64
		buf  = make([]byte, 0, 64<<10)
	)
	for size-off >= headerSize {
		buf = buf[:headerSize]
		if _, err := io.ReadFull(r, buf); err != nil {
			return recs, off, readErr(err)
		}
		n, ok := parseHeader(buf, size-off)
		if !ok {
			break
		}
		if cap(buf) < headerSize+n {
			nb := make([]byte, headerSize+n)
			copy(nb, buf)
			buf = nb
		}
		buf = buf[:headerSize+n]
		if _, err := io.ReadFull(r, buf[headerSize:]); err != nil {
			return recs, off, readErr(err)
		}
		e, ok := decodeRecord(buf)
		if !ok {
			break
		}
		recs = append(recs, scanned{off: off, size: int64(len(buf)), msgID: e.MsgID, added: e.Added})
		off += int64(len(buf))
	}
	return recs, off, nil
}

// readErr turns a short read (the file shrank under us) into the end of the
// good prefix and keeps real I/O errors.
func readErr(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return nil
	}
	return err
}

// moveTail copies the bytes of seg from good to size into a new file next
// to it, named <segment>.corrupt-<time>, syncs it, then truncates seg to
// good and syncs it. It returns the new file's name. The caller syncs the
// directory.
func moveTail(seg *segment, good, size int64, now time.Time) (string, error) {
	base := seg.path + corruptTag + now.UTC().Format("20060102T150405.000000000Z")
	var (
		out  *os.File
		name string
		err  error
	)
	for i := 0; i < 100; i++ {
		name = base
		if i > 0 {
			name = fmt.Sprintf("%s-%d", base, i)
		}
		out, err = os.OpenFile(name, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
		if !errors.Is(err, os.ErrExist) {
			break
		}
	}
	if err != nil {
		return "", fmt.Errorf("create %s: %w", filepath.Base(name), err)
	}
	if _, err := io.Copy(out, io.NewSectionReader(seg.f, good, size-good)); err != nil {
		out.Close()
		return "", fmt.Errorf("copy tail to %s: %w", filepath.Base(name), err)
	}
	if err := out.Sync(); err != nil {
		out.Close()
		return "", fmt.Errorf("sync %s: %w", filepath.Base(name), err)
	}
	if err := out.Close(); err != nil {
		return "", fmt.Errorf("close %s: %w", filepath.Base(name), err)
	}
	if err := seg.f.Truncate(good); err != nil {
		return "", fmt.Errorf("truncate %s: %w", filepath.Base(seg.path), err)
	}
	if err := seg.f.Sync(); err != nil {
		return "", fmt.Errorf("sync %s: %w", filepath.Base(seg.path), err)
	}
	return filepath.Base(name), nil
}

// readAcks returns the committed offset recorded in the ack file at path
// (0 when there is none) and truncates a torn or corrupt tail off it, so
// that markers appended later are read again.
func readAcks(path string) (int64, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", filepath.Base(path), err)
	}
	end, valid := parseAcks(b)
	if valid < len(b) {
		if err := truncateSync(path, int64(valid)); err != nil {
			return 0, err
		}
	}
	return end, nil
}

func truncateSync(path string, size int64) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("open %s: %w", filepath.Base(path), err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		return fmt.Errorf("truncate %s: %w", filepath.Base(path), err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", filepath.Base(path), err)
	}
	return nil
}

// syncDir fsyncs a directory so that files created, renamed or removed in
// it survive a power cut.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("open dir: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync dir: %w", err)
	}
	return nil
}
