package command

import (
	"path/filepath"
	"sort"
	"strings"
	"sync"
)

// redactedMark replaces a protected value in an output tail.
const redactedMark = "[redacted]"

var protected struct {
	mu     sync.RWMutex
	values []string
	files  []string
}

// Protect registers the program's secrets: values no output tail may carry
// and files no sandboxed command may see. A program calls it once at start,
// before any command runs; a later call replaces the earlier one.
func Protect(values, files []string) {
	vs := make([]string, 0, len(values))
	for _, v := range values {
		if v != "" {
			vs = append(vs, v)
		}
	}
	// Longest first, so a secret that contains another is replaced whole.
	sort.Slice(vs, func(i, j int) bool { return len(vs[i]) > len(vs[j]) })
	fs := make([]string, 0, len(files))
	for _, f := range files {
		if f != "" {
			if abs, err := filepath.Abs(f); err == nil {
				fs = append(fs, abs)
			}
		}
	}
	protected.mu.Lock()
	protected.values, protected.files = vs, fs
	protected.mu.Unlock()
}

func protectedFiles() []string {
	protected.mu.RLock()
	defer protected.mu.RUnlock()
	return append([]string(nil), protected.files...)
}

// redact replaces every exact occurrence of a protected value in s.
func redact(s string) string {
	protected.mu.RLock()
	defer protected.mu.RUnlock()
	for _, v := range protected.values {
		s = strings.ReplaceAll(s, v, redactedMark)
	}
	return s
}
