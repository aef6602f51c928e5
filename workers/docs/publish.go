package docs

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// MaxSiteBytes bounds the size of one published site.
const MaxSiteBytes = 2 << 30

const (
	stateFile  = "state.json"
	currentLn  = "current"
	releaseDir = "releases"
)

// state is what is live for one branch, written beside "current".
type state struct {
	// Time is the envelope time of the event that published Commit.
	Time    time.Time `json:"time"`
	Commit  string    `json:"commit"`
	EventID string    `json:"event_id"`
	// Releases lists the kept releases, oldest first.
	Releases []string `json:"releases"`
}

type tombstone struct {
	Time time.Time `json:"time"`
}

func readState(branchDir string) (*state, error) {
	var st state
	ok, err := readJSON(filepath.Join(branchDir, stateFile), &st)
	if !ok {
		return nil, err
	}
	return &st, nil
}

func tombstonePath(t *target) string { return filepath.Join(t.metaDir, t.seg+".deleted") }

func readTombstone(t *target) (*tombstone, error) {
	var ts tombstone
	ok, err := readJSON(tombstonePath(t), &ts)
	if !ok {
		return nil, err
	}
	return &ts, nil
}

func writeTombstone(t *target, at time.Time) error {
	return writeJSON(tombstonePath(t), tombstone{Time: at})
}

func readJSON(p string, v any) (bool, error) {
	b, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("%w: read %s: %w", ErrPublish, filepath.Base(p), err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		// A corrupt file (cannot happen with atomic writes) counts as none.
		return false, nil
	}
	return true, nil
}

// writeJSON writes v to p atomically: a temporary file, synced, renamed.
func writeJSON(p string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	tmp := p + ".tmp-" + randSuffix()
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		return fmt.Errorf("%w: write %s: %w", ErrPublish, filepath.Base(p), err)
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, p)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("%w: write %s: %w", ErrPublish, filepath.Base(p), err)
	}
	return nil
}

// liveCommit is the release "current" points at, or "".
func liveCommit(branchDir string) string {
	dst, err := os.Readlink(filepath.Join(branchDir, currentLn))
	if err != nil {
		return ""
	}
	c, ok := strings.CutPrefix(dst, releaseDir+"/")
	if !ok {
		return ""
	}
	return c
}

// publish copies the built site into releases/<commit> (through a
// temporary directory renamed into place), records next in the state file,
// swaps "current" to it by rename, and prunes old releases. It returns the
// release's path relative to the publish root.
func publish(t *target, checkout, commit string, next state, prev *state) (string, error) {
	src, err := os.OpenRoot(checkout)
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrPublish, err)
	}
	defer src.Close()
	// OpenRoot from inside the checkout: an output folder that is a
	// symlink out of the checkout is refused.
	site, err := src.OpenRoot(t.rule.Output)
	if err != nil {
		return "", fmt.Errorf("%w: output folder %q: %w", ErrBuild, t.rule.Output, err)
	}
	defer site.Close()
	if fi, err := site.Stat("."); err != nil || !fi.IsDir() {
		return "", fmt.Errorf("%w: output folder %q is not a directory", ErrBuild, t.rule.Output)
	}

	releases := filepath.Join(t.branchDir, releaseDir)
	if err := os.MkdirAll(releases, 0o755); err != nil {
		return "", fmt.Errorf("%w: %w", ErrPublish, err)
	}
	final := filepath.Join(releases, commit)
	if _, err := os.Lstat(final); errors.Is(err, fs.ErrNotExist) {
		tmp := final + ".tmp-" + randSuffix()
		if err := copySite(site.FS(), tmp); err != nil {
			_ = os.RemoveAll(tmp)
			return "", err
		}
		if err := os.Rename(tmp, final); err != nil {
			_ = os.RemoveAll(tmp)
			return "", fmt.Errorf("%w: %w", ErrPublish, err)
		}
	} else if err != nil {
		return "", fmt.Errorf("%w: %w", ErrPublish, err)
	}
	// A release built before (a redelivery after a crash) is complete:
	// it only ever appears by rename.

	if prev != nil {
		next.Releases = slices.DeleteFunc(slices.Clone(prev.Releases), func(c string) bool { return c == commit })
	}
	next.Releases = append(next.Releases, commit)
	if len(next.Releases) > t.rule.Keep {
		next.Releases = next.Releases[len(next.Releases)-t.rule.Keep:]
	}
	// State first: if we stop before the swap, a redelivery of this event
	// sees its own commit recorded but not live and finishes the swap.
	if err := writeJSON(filepath.Join(t.branchDir, stateFile), next); err != nil {
		return "", err
	}
	link := filepath.Join(t.branchDir, currentLn)
	tmpLink := link + ".tmp"
	_ = os.Remove(tmpLink)
	if err := os.Symlink(releaseDir+"/"+commit, tmpLink); err != nil {
		return "", fmt.Errorf("%w: %w", ErrPublish, err)
	}
	if err := os.Rename(tmpLink, link); err != nil {
		return "", fmt.Errorf("%w: %w", ErrPublish, err)
	}
	prune(releases, next.Releases)
	return filepath.ToSlash(filepath.Join(t.owner, t.name, t.seg, releaseDir, commit)), nil
}

// prune removes every entry of releases not in keep: old releases and the
// temporary directories of interrupted copies (we hold the branch lock).
func prune(releases string, keep []string) {
	entries, err := os.ReadDir(releases)
	if err != nil {
		return
	}
	for _, e := range entries {
		if !slices.Contains(keep, e.Name()) {
			_ = os.RemoveAll(filepath.Join(releases, e.Name()))
		}
	}
}

// copySite copies the regular files and directories of site into dst.
// Symlinks and special files are left out: a published site never points
// outside itself.
func copySite(site fs.FS, dst string) error {
	var total int64
	return fs.WalkDir(site, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return fmt.Errorf("%w: read site: %w", ErrPublish, err)
		}
		target := filepath.Join(dst, filepath.FromSlash(p))
		switch {
		case d.IsDir():
			if err := os.MkdirAll(target, 0o755); err != nil {
				return fmt.Errorf("%w: %w", ErrPublish, err)
			}
			return nil
		case !d.Type().IsRegular():
			return nil
		}
		in, err := site.Open(p)
		if err != nil {
			return fmt.Errorf("%w: read %s: %w", ErrPublish, path.Base(p), err)
		}
		defer in.Close()
		out, err := os.OpenFile(target, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
		if err != nil {
			return fmt.Errorf("%w: %w", ErrPublish, err)
		}
		n, err := io.Copy(out, io.LimitReader(in, MaxSiteBytes-total+1))
		total += n
		if cerr := out.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("%w: %w", ErrPublish, err)
		}
		if total > MaxSiteBytes {
			return fmt.Errorf("%w: site larger than %d bytes", ErrBuild, int64(MaxSiteBytes))
		}
		return nil
	})
}

// removeBranch takes a branch's published docs away: renamed aside first
// (so "current" disappears at once), then deleted.
func removeBranch(t *target) (bool, error) {
	if _, err := os.Lstat(t.branchDir); errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	trash := filepath.Join(t.metaDir, "trash-"+randSuffix())
	if err := os.Rename(t.branchDir, trash); err != nil {
		return false, fmt.Errorf("%w: remove branch: %w", ErrPublish, err)
	}
	if err := os.RemoveAll(trash); err != nil {
		return true, fmt.Errorf("%w: remove branch: %w", ErrPublish, err)
	}
	return true, nil
}
