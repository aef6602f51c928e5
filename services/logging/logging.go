package logging

import (
	"fmt"
	"io"
	"os"
	"time"

	"github.com/mattn/go-isatty"
	"github.com/rs/zerolog"
)

// Formats.
const (
	FormatJSON    = "json"
	FormatConsole = "console"
	FormatAuto    = "auto"
)

func init() {
	zerolog.TimestampFunc = func() time.Time { return time.Now().UTC() }
	zerolog.TimeFieldFormat = time.RFC3339Nano
}

// New returns a logger writing to w at level (trace, debug, info, warn,
// error; empty means info). format is json, console, or auto (console when
// w is a terminal, else JSON; empty means auto). Timestamps are UTC.
func New(level, format string, w io.Writer) (zerolog.Logger, error) {
	if level == "" {
		level = "info"
	}
	lvl, err := zerolog.ParseLevel(level)
	if err != nil || lvl == zerolog.NoLevel {
		return zerolog.Nop(), fmt.Errorf("%w %q: want trace, debug, info, warn or error", ErrLevel, level)
	}
	switch format {
	case FormatJSON:
	case FormatConsole:
		w = console(w)
	case FormatAuto, "":
		if IsTerminal(w) {
			w = console(w)
		}
	default:
		return zerolog.Nop(), fmt.Errorf("%w %q: want json, console or auto", ErrFormat, format)
	}
	return zerolog.New(w).Level(lvl).With().Timestamp().Logger(), nil
}

// IsTerminal reports whether w is a terminal.
func IsTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	return isatty.IsTerminal(f.Fd()) || isatty.IsCygwinTerminal(f.Fd())
}

func console(w io.Writer) io.Writer {
	return zerolog.ConsoleWriter{Out: w, TimeFormat: time.RFC3339, TimeLocation: time.UTC, NoColor: !IsTerminal(w)}
}
