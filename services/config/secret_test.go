package config

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
)

// A secret file others can read leaks the secret to every local user and
// to any build that runs as another user: refused at start.
func TestSecretFileMode(t *testing.T) {
	tests := []struct {
		name    string
		mode    os.FileMode
		wantErr error
	}{
		{name: "owner only", mode: 0o600},
		{name: "owner read only", mode: 0o400},
		{name: "group readable", mode: 0o640, wantErr: ErrSecretFileMode},
		{name: "others readable", mode: 0o604, wantErr: ErrSecretFileMode},
		{name: "world readable", mode: 0o644, wantErr: ErrSecretFileMode},
	}
	for _, tt := range tests {
		for _, name := range []string{"FORGEBUS_GOGS_SECRETS", "FORGEBUS_GOGS_TOKEN", "FORGEBUS_MODELS_SECRET", "FORGEBUS_NATS_PASSWORD"} {
			t.Run(tt.name+"/"+name, func(t *testing.T) {
				p := writeFile(t, "secret", "the-secret-value")
				if err := os.Chmod(p, tt.mode); err != nil {
					t.Fatal(err)
				}
				_, err := Load(envOf(map[string]string{name + "_FILE": p}))
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				if err == nil {
					return
				}
				msg := err.Error()
				if !strings.Contains(msg, p) || !strings.Contains(msg, fmt.Sprintf("%04o", tt.mode)) || !strings.Contains(msg, name+"_FILE") {
					t.Errorf("err = %q, want it to name %s_FILE, the file %s and its mode %04o", msg, name, p, tt.mode)
				}
				if strings.Contains(msg, "the-secret-value") {
					t.Error("the error reveals the secret")
				}
			})
		}
	}
}

func TestSecretValuesAndFiles(t *testing.T) {
	tokenFile := writeFile(t, "token", "tok-from-file\n")
	c, err := Load(envOf(map[string]string{
		"FORGEBUS_GOGS_SECRETS": "s1,s2", "FORGEBUS_GOGS_TOKEN_FILE": tokenFile,
		"FORGEBUS_MODELS_SECRET": "m", "FORGEBUS_NATS_PASSWORD": "p",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(c.SecretValues(), ","); got != "s1,s2,tok-from-file,m,p" {
		t.Errorf("SecretValues = %q", got)
	}
	if len(c.SecretFiles) != 1 || c.SecretFiles[0] != tokenFile {
		t.Errorf("SecretFiles = %q, want [%s]", c.SecretFiles, tokenFile)
	}
}
