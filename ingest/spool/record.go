package spool

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"math"
	"time"
)

// On-disk formats. All integers are little endian.
//
// A segment file is a sequence of records, nothing else:
//
//	magic "FBS1" | len uint32 | crc uint32 | payload (len bytes)
//
// crc is the CRC-32C of the 4 len bytes followed by the payload, so a cut or
// a flipped bit anywhere in a record, its length included, is detected. The
// payload is
//
//	added int64 (Unix ns) | id_len uint16 | msg id | subj_len uint16 | subject | data
//
// An ack file (one per segment) is a sequence of 16-byte markers, appended
// and fsync'd after each forwarded record:
//
//	magic "FBA1" | end uint64 | crc uint32 (CRC-32C of magic and end)
//
// end is the offset just past the last forwarded record of the segment; the
// greatest valid end is the segment's committed offset.
const (
	recordMagic   = "FBS1"
	ackMagic      = "FBA1"
	headerSize    = 12
	ackSize       = 16
	payloadFixed  = 8 + 2 + 2
	maxFieldLen   = math.MaxUint16
	maxSubjectLen = 4096

	// MaxRecordBytes is the largest record (header, ids and data) the spool
	// accepts; a larger [Entry] is refused with [ErrBadEntry]. It is well
	// above NATS' largest configurable payload (64 MiB).
	MaxRecordBytes = 80 << 20
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// recordSize is the encoded size of e.
func recordSize(e *Entry) int64 {
	return int64(headerSize + payloadFixed + len(e.MsgID) + len(e.Subject) + len(e.Data))
}

// validate reports why e cannot be spooled, or nil.
func validate(e *Entry) error {
	switch {
	case e.MsgID == "":
		return fmt.Errorf("%w: empty msg id", ErrBadEntry)
	case len(e.MsgID) > maxFieldLen:
		return fmt.Errorf("%w: msg id longer than %d bytes", ErrBadEntry, maxFieldLen)
	case e.Subject == "":
		return fmt.Errorf("%w: empty subject", ErrBadEntry)
	case len(e.Subject) > maxSubjectLen:
		return fmt.Errorf("%w: subject longer than %d bytes", ErrBadEntry, maxSubjectLen)
	case recordSize(e) > MaxRecordBytes:
		return fmt.Errorf("%w: record larger than %d bytes", ErrBadEntry, MaxRecordBytes)
	}
	for i := 0; i < len(e.Subject); i++ {
		if c := e.Subject[i]; c <= ' ' || c == 0x7f {
			return fmt.Errorf("%w: subject has a blank or control character", ErrBadEntry)
		}
	}
	for i := 0; i < len(e.MsgID); i++ {
		if c := e.MsgID[i]; c < ' ' || c == 0x7f {
			return fmt.Errorf("%w: msg id has a control character", ErrBadEntry)
		}
	}
	return nil
}

// appendRecord appends the encoding of e to buf and returns it.
func appendRecord(buf []byte, e *Entry) []byte {
	start := len(buf)
	plen := payloadFixed + len(e.MsgID) + len(e.Subject) + len(e.Data)
	buf = append(buf, recordMagic...)
	buf = binary.LittleEndian.AppendUint32(buf, uint32(plen))
	buf = append(buf, 0, 0, 0, 0) // crc, filled in below
	buf = binary.LittleEndian.AppendUint64(buf, uint64(e.Added.UnixNano()))
	buf = binary.LittleEndian.AppendUint16(buf, uint16(len(e.MsgID)))
	buf = append(buf, e.MsgID...)
	buf = binary.LittleEndian.AppendUint16(buf, uint16(len(e.Subject)))
	buf = append(buf, e.Subject...)
	buf = append(buf, e.Data...)
	rec := buf[start:]
	crc := crc32.Update(0, castagnoli, rec[4:8])
	crc = crc32.Update(crc, castagnoli, rec[headerSize:])
	binary.LittleEndian.PutUint32(rec[8:12], crc)
	return buf
}

// parseHeader checks a record header and returns the payload length. avail
// is how many bytes the file holds from the start of the header on; a length
// that runs past it is a cut record.
func parseHeader(h []byte, avail int64) (int, bool) {
	if len(h) < headerSize || string(h[:4]) != recordMagic {
		return 0, false
	}
	n := int64(binary.LittleEndian.Uint32(h[4:8]))
	if n < payloadFixed || n > MaxRecordBytes || headerSize+n > avail {
		return 0, false
	}
	return int(n), true
}

// decodeRecord checks the CRC of a whole record (header and payload) and
// decodes it. The returned Entry's strings are copies; Data aliases rec.
func decodeRecord(rec []byte) (Entry, bool) {
	if len(rec) < headerSize+payloadFixed || string(rec[:4]) != recordMagic {
		return Entry{}, false
	}
	if int(binary.LittleEndian.Uint32(rec[4:8])) != len(rec)-headerSize {
		return Entry{}, false
	}
	crc := crc32.Update(0, castagnoli, rec[4:8])
	crc = crc32.Update(crc, castagnoli, rec[headerSize:])
	if crc != binary.LittleEndian.Uint32(rec[8:12]) {
		return Entry{}, false
	}
	p := rec[headerSize:]
	added := int64(binary.LittleEndian.Uint64(p[0:8]))
	p = p[8:]
	idLen := int(binary.LittleEndian.Uint16(p[0:2]))
	p = p[2:]
	if idLen > len(p)-2 {
		return Entry{}, false
	}
	id := string(p[:idLen])
	p = p[idLen:]
	subjLen := int(binary.LittleEndian.Uint16(p[0:2]))
	p = p[2:]
	if subjLen > len(p) {
		return Entry{}, false
	}
	subj := string(p[:subjLen])
	e := Entry{MsgID: id, Subject: subj, Data: p[subjLen:], Added: time.Unix(0, added).UTC()}
	if validate(&e) != nil {
		return Entry{}, false
	}
	return e, true
}

// appendAck appends an ack marker for end to buf.
func appendAck(buf []byte, end int64) []byte {
	start := len(buf)
	buf = append(buf, ackMagic...)
	buf = binary.LittleEndian.AppendUint64(buf, uint64(end))
	crc := crc32.Checksum(buf[start:], castagnoli)
	return binary.LittleEndian.AppendUint32(buf, crc)
}

// parseAcks returns the greatest end of the valid markers at the start of b
// and the length of that valid prefix; it stops at the first bad marker.
func parseAcks(b []byte) (end int64, valid int) {
	for len(b)-valid >= ackSize {
		m := b[valid : valid+ackSize]
		if string(m[:4]) != ackMagic || crc32.Checksum(m[:12], castagnoli) != binary.LittleEndian.Uint32(m[12:16]) {
			break
		}
		v := binary.LittleEndian.Uint64(m[4:12])
		if v > math.MaxInt64 {
			break
		}
		if int64(v) > end {
			end = int64(v)
		}
		valid += ackSize
	}
	return end, valid
}
