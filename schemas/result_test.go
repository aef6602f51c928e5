package schemas

import (
	"bytes"
	"encoding/json"
	"math"
	"testing"
	"time"
)

// AppendJSON must write exactly what json.Marshal writes: consumers of
// FORGE_RESULTS, and the result schema, see no difference.
func TestResultAppendJSON(t *testing.T) {
	at := time.Date(2026, 11, 24, 20, 1, 2, 345678900, time.UTC)
	cases := []Result{
		{},
		{Worker: "docs", EventID: "e-1", EventType: TypePrefix + EventPush, Repo: "acme/site", Outcome: OutcomeSucceeded,
			Attempt: 1, DurationMS: 0.123, Started: at, Finished: at.Add(time.Millisecond)},
		{Worker: "w", EventID: "<script>&\"\\\u2028\u2029\x00\x1f\b\f\n\r\t\x7f", Repo: "a/b", Subject: "refs/heads/ü",
			Outcome: OutcomeDenied, Rule: "branches: main", Error: "bad \xff\xfe utf-8 \xe2\x80", Attempt: -3,
			DurationMS: 1e21, Detail: Detail{"z": "1", "a": "<2>", "": "", "é": "\u2029"},
			Started: at.In(time.FixedZone("x", 5*3600+30*60)), Finished: time.Time{}},
		{DurationMS: 1e-7, Detail: Detail{}},
		{DurationMS: -2.5e-9},
		{DurationMS: 123456789.125},
		{DurationMS: 0.001}, {DurationMS: 0.01}, {DurationMS: 0.1}, {DurationMS: 1.5}, {DurationMS: 12.34},
		{DurationMS: 999999999999.999}, {DurationMS: 1000000000000.001}, {DurationMS: 0.3 * 3},
	}
	for i, r := range cases {
		want, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		got, err := r.AppendJSON(nil)
		if err != nil {
			t.Fatalf("case %d: %v", i, err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("case %d:\n got %s\nwant %s", i, got, want)
		}
	}
	for _, r := range []Result{{DurationMS: math.NaN()}, {DurationMS: math.Inf(1)}, {Started: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)}} {
		if _, err := json.Marshal(r); err == nil {
			t.Fatalf("json.Marshal(%+v) succeeded", r)
		}
		if b, err := r.AppendJSON(nil); err == nil {
			t.Errorf("AppendJSON(%+v) = %s, want an error as json.Marshal gives", r, b)
		}
	}
}

func FuzzResultAppendJSON(f *testing.F) {
	f.Add("docs", "e-1", "a/b", "refs/heads/main", "boom", "k", "v", 0.5, int64(0), 3)
	f.Add("<&>", "\u2028\xff", "\x00", "", "\"\\", "", "\x1f", 1e-9, int64(-62135596800), -1)
	f.Add("", "", "", "", "", "", "", 0.007, int64(1), 1)
	f.Add("", "", "", "", "", "", "", 1234.56, int64(1), 1)
	f.Fuzz(func(t *testing.T, worker, id, repo, subject, errText, k, v string, ms float64, unix int64, attempt int) {
		at := time.Unix(unix, int64(attempt)).UTC()
		r := Result{Worker: worker, EventID: id, EventType: id + worker, Repo: repo, Subject: subject,
			Outcome: Outcome(k), Attempt: attempt, DurationMS: ms, Error: errText, Rule: v,
			Detail: Detail{k: v, v: k}, Started: at, Finished: at.Local()}
		for _, r := range []Result{r, {DurationMS: float64(uint64(unix)%1e15) / 1000}} {
			want, werr := json.Marshal(r)
			got, gerr := r.AppendJSON(nil)
			if (werr == nil) != (gerr == nil) {
				t.Fatalf("json.Marshal error %v, AppendJSON error %v", werr, gerr)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("\n got %s\nwant %s", got, want)
			}
		}
	})
}
