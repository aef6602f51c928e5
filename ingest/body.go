package ingest

import (
	"errors"
	"io"
	"sync"
	"sync/atomic"
)

// Body buffers: a request starts with firstBufSize bytes and, once those
// are filled, a pooled bufPoolSize buffer, then doubles. Nothing is ever
// reserved from Content-Length, so a body claimed but not sent costs only
// the first buffer.
const (
	firstBufSize = 512
	bufPoolSize  = 64 << 10
)

var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, bufPoolSize); return &b }}

// errBusyBuffers: the request's body would take the shared body budget
// past [Config.MaxBufferedBytes].
var errBusyBuffers = errors.New("body buffers at their bound")

// budget is the body bytes all requests may hold at once.
type budget struct {
	limit int64
	used  atomic.Int64
}

// take reserves n bytes, or reports false and reserves nothing.
func (b *budget) take(n int64) bool {
	if b.used.Add(n) > b.limit {
		b.used.Add(-n)
		return false
	}
	return true
}

func (b *budget) release(n int64) { b.used.Add(-n) }

// bodyBuf is one request's body, read with [bodyBuf.readFrom].
type bodyBuf struct {
	b      []byte
	pooled *[]byte // b's buffer when it came from bufPool
	held   int64   // reserved from the budget
	bud    *budget
}

// readFrom reads r to its end, growing the buffer as bytes arrive up to
// limit+1 bytes (one past limit, so that r's own limit reports a body too
// large) and reserving each growth from the budget first. It returns
// [errBusyBuffers] when the budget has no room, and r's error otherwise.
func (bb *bodyBuf) readFrom(r io.Reader, limit int64) error {
	for {
		if len(bb.b) == cap(bb.b) {
			if err := bb.grow(limit + 1); err != nil {
				return err
			}
		}
		n, err := r.Read(bb.b[len(bb.b):cap(bb.b)])
		bb.b = bb.b[:len(bb.b)+n]
		switch {
		case err == io.EOF:
			return nil
		case err != nil:
			return err
		}
	}
}

func (bb *bodyBuf) grow(limit int64) error {
	size := int64(firstBufSize)
	switch c := int64(cap(bb.b)); {
	case c >= limit:
		return errBodyTooLarge // r does not stop at the limit itself
	case c == 0:
	case c < bufPoolSize:
		size = bufPoolSize
	default:
		size = 2 * c
	}
	size = min(size, limit)
	add := size - int64(cap(bb.b))
	if !bb.bud.take(add) {
		return errBusyBuffers
	}
	bb.held += add
	var grown []byte
	var pooled *[]byte
	if size == bufPoolSize {
		pooled = bufPool.Get().(*[]byte)
		grown = (*pooled)[:0]
	} else {
		grown = make([]byte, 0, size)
	}
	grown = append(grown, bb.b...)
	bb.free()
	bb.b, bb.pooled = grown, pooled
	return nil
}

// free returns a pooled buffer to the pool.
func (bb *bodyBuf) free() {
	if bb.pooled != nil {
		*bb.pooled = (*bb.pooled)[:0]
		bufPool.Put(bb.pooled)
		bb.pooled = nil
	}
}

// release frees the buffer and gives its reservation back.
func (bb *bodyBuf) release() {
	bb.free()
	bb.b = nil
	bb.bud.release(bb.held)
	bb.held = 0
}
