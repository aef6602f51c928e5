package deploytest

import (
	"os"
	"path/filepath"
	"regexp"
	"testing"
)

// repoRoot is the repository root: the nearest parent holding go.work.
func repoRoot(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.work")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.work above the test's directory")
		}
		dir = parent
	}
}

// readRepoFile returns a file of the repository by its slash path.
func readRepoFile(t testing.TB, rel string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repoRoot(t), filepath.FromSlash(rel)))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// secretName matches an environment variable that holds a secret.
var secretName = regexp.MustCompile(`(?i)SECRET|TOKEN|PASSWORD`)
