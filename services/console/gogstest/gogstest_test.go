package gogstest

import (
	"net/http"
	"testing"
)

// The fake refuses what Gogs refuses.
func TestRefusals(t *testing.T) {
	s := Start(t, []User{{Login: "ann", Email: "ann@x.test", Password: "pw", Tokens: []string{"tok-ann"}}, {Login: "eve", Password: "evepw"}},
		[]Org{{Name: "ops", Members: []string{"ann"}}}, []Repo{{Owner: "ops", Name: "infra", Private: true}, {Owner: "eve", Name: "pub"}})
	tests := []struct {
		name, path string
		set        func(r *http.Request)
		want       int
	}{
		{"no auth on /user", "/api/v1/user", nil, 401},
		{"token header", "/api/v1/user", func(r *http.Request) { r.Header.Set("Authorization", "token tok-ann") }, 200},
		{"token query", "/api/v1/user?token=tok-ann", nil, 200},
		{"access_token query", "/api/v1/user?access_token=tok-ann", nil, 200},
		{"Bearer is not read", "/api/v1/user", func(r *http.Request) { r.Header.Set("Authorization", "Bearer tok-ann") }, 401},
		{"Token capitalised is not read", "/api/v1/user", func(r *http.Request) { r.Header.Set("Authorization", "Token tok-ann") }, 401},
		{"wrong token", "/api/v1/user", func(r *http.Request) { r.Header.Set("Authorization", "token nope") }, 401},
		{"basic on /user is not token auth", "/api/v1/user", func(r *http.Request) { r.SetBasicAuth("ann", "pw") }, 401},
		{"basic on tokens", "/api/v1/users/ann/tokens", func(r *http.Request) { r.SetBasicAuth("ann", "pw") }, 200},
		{"basic with email", "/api/v1/users/ann/tokens", func(r *http.Request) { r.SetBasicAuth("ann@x.test", "pw") }, 200},
		{"wrong password", "/api/v1/users/ann/tokens", func(r *http.Request) { r.SetBasicAuth("ann", "nope") }, 401},
		{"token on tokens", "/api/v1/users/ann/tokens", func(r *http.Request) { r.Header.Set("Authorization", "token tok-ann") }, 401},
		{"private repo, member", "/api/v1/repos/ops/infra", func(r *http.Request) { r.SetBasicAuth("ann", "pw") }, 200},
		{"private repo, stranger", "/api/v1/repos/ops/infra", func(r *http.Request) { r.SetBasicAuth("eve", "evepw") }, 404},
		{"private repo, anonymous", "/api/v1/repos/ops/infra", nil, 404},
		{"public repo, anonymous", "/api/v1/repos/eve/pub", nil, 200},
		{"not the API", "/user", func(r *http.Request) { r.Header.Set("Authorization", "token tok-ann") }, 404},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodGet, s.URL+tt.path, nil)
			if tt.set != nil {
				tt.set(req)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tt.want {
				t.Errorf("%s = %d, want %d", tt.path, resp.StatusCode, tt.want)
			}
		})
	}
}
