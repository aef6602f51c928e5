package console

import (
	"bytes"
	"fmt"
	"html/template"
	"net/http"
	"strings"
	"time"

	"github.com/forgebus/forgebus/schemas"
	"github.com/forgebus/forgebus/services/history"
)

var pageNames = []string{"login", "error", "deliveries", "delivery", "workers", "dlq", "audit"}

var funcs = template.FuncMap{
	"stamp": func(t time.Time) string {
		if t.IsZero() {
			return "-"
		}
		return t.UTC().Format("2006-01-02 15:04:05Z")
	},
	"badge": func(o schemas.Outcome) string {
		switch o {
		case schemas.OutcomeSucceeded, schemas.OutcomeDuplicate:
			return "ok"
		case schemas.OutcomeFailed:
			return "warn"
		case schemas.OutcomeDeadLettered, schemas.OutcomeDenied:
			return "bad"
		}
		return "info"
	},
	"reason": history.Reason,
	"short": func(s string) string {
		if len(s) > 12 {
			return s[:12]
		}
		return s
	},
	"join":      strings.Join,
	"outcomeOf": func(m map[string]schemas.Outcome, w string) schemas.Outcome { return m[w] },
	"countOf":   func(m map[schemas.Outcome]int, o string) int { return m[schemas.Outcome(o)] },
	"lines":     func(s string) []string { return strings.Split(strings.TrimRight(s, "\n"), "\n") },
	"without": func(d schemas.Detail, key string) map[string]string {
		out := map[string]string{}
		for k, v := range d {
			if k != key {
				out[k] = v
			}
		}
		return out
	},
}

func parsePages() (map[string]*template.Template, error) {
	pages := map[string]*template.Template{}
	for _, name := range pageNames {
		t, err := template.New(name).Funcs(funcs).ParseFS(assets, "templates/layout.html", "templates/"+name+".html")
		if err != nil {
			return nil, fmt.Errorf("console: parse %s: %w", name, err)
		}
		pages[name] = t
	}
	return pages, nil
}

// render writes page with the layout; sess nil is a signed-out page.
func (s *Server) render(w http.ResponseWriter, r *http.Request, page string, sess *Session, data map[string]any) {
	data["Session"] = sess
	data["Page"] = page
	data["Since"] = s.cfg.Now().UTC().Format(time.RFC3339Nano)
	var buf bytes.Buffer
	if err := s.pages[page].ExecuteTemplate(&buf, "layout", data); err != nil {
		s.log.Error().Err(err).Str("page", page).Msg("console: render")
		http.Error(w, "render failed", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_, _ = buf.WriteTo(w)
}
