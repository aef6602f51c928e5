package envsync

import (
	"errors"
	"strings"
	"testing"

	"github.com/joho/godotenv"
)

const secret = "s3cr3t-VALUE-x9"

func TestParseEnv(t *testing.T) {
	tests := []struct {
		name     string
		src      string
		want     map[string]string
		wantErr  error
		wantLine string
	}{
		{
			name: "quotes export comments multiline",
			src:  "# header\nexport A=1\nB='" + secret + "'\nC=\"line1\nline2\"\nD=plain # comment\n\n",
			want: map[string]string{"A": "1", "B": secret, "C": "line1\nline2", "D": "plain"},
		},
		{name: "crlf", src: "A=1\r\nB=2\r\n", want: map[string]string{"A": "1", "B": "2"}},
		{name: "dotted key", src: "app.port=80\n", want: map[string]string{"app.port": "80"}},
		{name: "unterminated quote", src: "A=1\nB=2\nC=\"" + secret + "\nD=4\n", wantErr: ErrParse, wantLine: "line 3"},
		{name: "no equals", src: "A=1\nJUSTAKEY\nB=" + secret + "\n", wantErr: ErrParse, wantLine: "line 2"},
		{name: "bad char in key", src: "A=1\n\n# c\nB-C=" + secret + "\n", wantErr: ErrParse, wantLine: "line 4"},
		{name: "no equals at end", src: "A=" + secret + "\nLAST", wantErr: ErrBadKey, wantLine: "line 2"},
		{name: "key ending in dot", src: "A=1\nB.=" + secret + "\n", wantErr: ErrBadKey, wantLine: "line 2"},
		{name: "non-ascii key", src: "A=1\nÄB=" + secret + "\n", wantErr: ErrParse, wantLine: "line 2"},
		{name: "double dot key", src: "A..B=" + secret + "\n", wantErr: ErrBadKey, wantLine: "line 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseEnv([]byte(tt.src))
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if err != nil {
				if !strings.Contains(err.Error(), tt.wantLine) {
					t.Fatalf("err = %q, want it to name %q", err, tt.wantLine)
				}
				if strings.Contains(err.Error(), secret) || strings.Contains(err.Error(), "s3cr3t") {
					t.Fatalf("err reveals a value: %q", err)
				}
				return
			}
			if len(got) != len(tt.want) {
				t.Fatalf("got %d keys, want %d", len(got), len(tt.want))
			}
			for k, v := range tt.want {
				if got[k] != v {
					t.Fatalf("%s = %q, want %q", k, got[k], v)
				}
			}
		})
	}
}

func TestRenderRoundTrips(t *testing.T) {
	env := map[string]string{
		"PLAIN":   secret,
		"DOLLAR":  "a$B${C}\\$d",
		"SQUOTE":  "it's",
		"DQUOTE":  `say "hi" there`,
		"NEWLINE": "a\nb\r\nc",
		"BSLASH":  `c:\path\`,
		"ESC_N":   `literal \n here`,
		"HASH":    "a #b",
		"EMPTY":   "",
		"SPACES":  "  padded  ",
		"MIXED":   `it's a \ "x`,
		"WINPATH": `it's c:\dir\`,
	}
	b, err := render(env)
	if err != nil {
		t.Fatal(err)
	}
	back, err := godotenv.UnmarshalBytes(b)
	if err != nil {
		t.Fatalf("parse rendered: %v", err)
	}
	for k, v := range env {
		if back[k] != v {
			t.Errorf("%s: got %q, want %q\n%s", k, back[k], v, b)
		}
	}
	if _, err := render(map[string]string{"X": `'a"`}); !errors.Is(err, ErrBadKey) {
		t.Fatalf("unrenderable value: err = %v", err)
	}
}

func TestEscapeKVAndStem(t *testing.T) {
	tests := []struct{ in, want string }{
		{"acme", "acme"}, {"my.repo", "my=2Erepo"}, {"a b", "a=20b"}, {"", "="}, {"a=b", "a=3Db"},
	}
	for _, tt := range tests {
		if got := escapeKV(tt.in); got != tt.want {
			t.Errorf("escapeKV(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
	for in, want := range map[string]string{"deploy/production.env": "production", ".env": "env", "a/b": "b", "x.tar.gz": "x.tar"} {
		if got := fileStem(in); got != want {
			t.Errorf("fileStem(%q) = %q, want %q", in, got, want)
		}
	}
}

func FuzzParseEnv(f *testing.F) {
	f.Add([]byte("A=1\nB='x'\nC=\"y\nz\"\n"))
	f.Add([]byte("export A=1 # c\n#x\nB"))
	f.Fuzz(func(t *testing.T, src []byte) {
		env, err := parseEnv(src)
		if err != nil {
			return
		}
		for k := range env {
			if checkKey(k) != nil {
				t.Fatalf("accepted bad key %q", k)
			}
		}
	})
}

func FuzzRenderRoundTrip(f *testing.F) {
	for _, s := range []string{secret, "a$b", "it's", `"q"`, "a\r\nb", `c:\x\`, "#x", " s "} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		b, err := render(map[string]string{"K": v})
		if err != nil {
			return
		}
		back, err := godotenv.UnmarshalBytes(b)
		if err != nil {
			t.Fatalf("rendered %q does not parse: %v", b, err)
		}
		if back["K"] != v {
			t.Fatalf("value %q came back as %q (rendered %q)", v, back["K"], b)
		}
	})
}
