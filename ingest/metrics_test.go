package ingest

import (
	"bufio"
	"bytes"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
)

// gathered is a metric value from a registry: name plus labels, e.g.
// `forgebus_ingest_requests_total{event="push",status="202"}`, to value
// (a histogram's sample count).
func gathered(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, l.GetName()+"="+`"`+l.GetValue()+`"`)
			}
			key := mf.GetName()
			if len(labels) > 0 {
				key += "{" + strings.Join(labels, ",") + "}"
			}
			switch {
			case m.GetCounter() != nil:
				out[key] = m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				out[key] = m.GetGauge().GetValue()
			case m.GetHistogram() != nil:
				out[key] = float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return out
}

func TestMetrics(t *testing.T) {
	b := newBroker(t)
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	if again := NewMetrics(reg); again.requests != m.requests {
		t.Fatal("NewMetrics twice on one registry does not share the collectors")
	}
	h := newHandler(t, signedConfig(fixtureSecret), b.js, WithMetrics(m))

	serve(t, h, loadFixture(t, "push-multi-commit").request())
	serve(t, h, loadFixture(t, "push-redelivery").request())
	serve(t, h, loadFixture(t, "form-push-multi-commit").request())
	serve(t, h, loadFixture(t, "issues-opened").request())
	bad := loadFixture(t, "fork").request()
	bad.Header.Set(HeaderSignature, sign("wrong", nil))
	serve(t, h, bad)
	body := []byte(`{"repository":{"name":"r","owner":{"login":"o"},"html_url":"https://git.example.com/o/r"},"sender":{"login":"a"}}`)
	serve(t, h, signedRequest("wiki", "wiki-1", fixtureSecret, body))

	got := gathered(t, reg)
	want := map[string]float64{
		`forgebus_ingest_requests_total{event="push",status="202"}`:         3,
		`forgebus_ingest_requests_total{event="issues",status="202"}`:       1,
		`forgebus_ingest_requests_total{event="unverified",status="401"}`:   1,
		`forgebus_ingest_requests_total{event="other",status="202"}`:        1,
		`forgebus_ingest_duplicates_total{kind="delivery"}`:                 1,
		`forgebus_ingest_duplicates_total{kind="payload"}`:                  1,
		`forgebus_ingest_duplicates_total{kind="unknown"}`:                  0,
		`forgebus_ingest_publish_seconds`:                                   5,
		`forgebus_ingest_body_bytes`:                                        6,
		`forgebus_ingest_in_flight`:                                         0,
		`forgebus_ingest_spooled_total`:                                     0,
		`forgebus_ingest_requests_total{event="unverified",status="202"}`:   0,
		`forgebus_ingest_requests_total{event="fork",status="401"}`:         0,
		`forgebus_ingest_spool_failures_total{reason="full"}`:               0,
		`forgebus_ingest_requests_total{event="wiki",status="202"}`:         0,
		`forgebus_ingest_requests_total{event="push",status="503"}`:         0,
		`forgebus_ingest_requests_total{event="pull_request",status="202"}`: 0,
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v", k, got[k], v)
		}
	}
	// Alertable before anything failed: the series exist at 0.
	for _, k := range []string{`forgebus_ingest_spool_failures_total{reason="full"}`, `forgebus_ingest_spool_failures_total{reason="error"}`} {
		if _, ok := got[k]; !ok {
			t.Errorf("%s is not exported before the first failure", k)
		}
	}
}

// TestLogLine: one line per request, with the fields an operator needs,
// warn for a rejection, and never a secret, signature or body.
func TestLogLine(t *testing.T) {
	b := newBroker(t)
	var out bytes.Buffer
	h, err := NewHandler(signedConfig(fixtureSecret), b.js, zerolog.New(&out))
	if err != nil {
		t.Fatal(err)
	}
	ok := loadFixture(t, "push-multi-commit")
	serve(t, h, ok.request())
	form := loadFixture(t, "form-push-multi-commit")
	serve(t, h, form.request())
	serve(t, h, loadFixture(t, "push-redelivery").request())
	bad := loadFixture(t, "issues-opened").request()
	bad.Header.Set(HeaderSignature, sign("wrong", nil))
	serve(t, h, bad)

	for _, leak := range []string{fixtureSecret, ok.Headers[HeaderSignature], sign("wrong", nil), "ünïcödé", "refs/heads/master"} {
		if strings.Contains(out.String(), leak) {
			t.Errorf("log reveals %q:\n%s", leak, out.String())
		}
	}
	var lines []map[string]any
	sc := bufio.NewScanner(&out)
	for sc.Scan() {
		var l map[string]any
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("log line %q: %v", sc.Text(), err)
		}
		lines = append(lines, l)
	}
	if len(lines) != 4 {
		t.Fatalf("%d log lines, want 4", len(lines))
	}
	accepted, rejected := lines[0], lines[3]
	if _, ok := accepted["duplicate_of"]; ok {
		t.Errorf("first copy logged as a duplicate: %v", accepted)
	}
	// The other hook's copy and the redelivery say which kind of duplicate.
	for i, want := range []map[string]any{
		{"duplicate": true, "duplicate_of": "payload", "delivery_id": form.delivery(), "event_id": ok.delivery(), "stream_seq": float64(1)},
		{"duplicate": true, "duplicate_of": "delivery", "delivery_id": ok.delivery(), "stream_seq": float64(1)},
	} {
		for k, v := range want {
			if lines[i+1][k] != v {
				t.Errorf("duplicate line %d: %s = %v, want %v", i+1, k, lines[i+1][k], v)
			}
		}
	}
	for k, v := range map[string]any{
		"level": "info", "status": float64(http.StatusAccepted), "event": "push",
		"delivery_id": ok.delivery(), "repo": "fixture-admin/webhook-fixtures",
		"stream_seq": float64(1), "duplicate": false, "signed": true, "bytes": float64(len(ok.Body)),
	} {
		if accepted[k] != v {
			t.Errorf("accepted line %s = %v, want %v", k, accepted[k], v)
		}
	}
	if _, ok := accepted["duration_ms"].(float64); !ok {
		t.Errorf("accepted line has no duration_ms: %v", accepted)
	}
	if rejected["level"] != "warn" || rejected["status"] != float64(http.StatusUnauthorized) || rejected["error"] == nil {
		t.Errorf("rejected line %v, want warn, 401 and an error", rejected)
	}
	for _, k := range []string{"delivery_id", "repo", "event", "subject"} {
		if _, ok := rejected[k]; ok {
			t.Errorf("rejected line logs unverified %s: %v", k, rejected)
		}
	}
}
