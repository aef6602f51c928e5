package schemas_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/forgebus/forgebus/schemas"
)

func ExampleEventSubject() {
	subj := schemas.EventSubject("git.example.com", schemas.EventPush, "acme", "docs.site")
	fmt.Println(subj)

	addr, err := schemas.ParseEventSubject(subj)
	if err != nil {
		panic(err)
	}
	fmt.Println(addr.Instance, addr.Event, addr.Owner, addr.Repo)
	// Output:
	// forge.git%2Eexample%2Ecom.push.acme.docs%2Esite
	// git.example.com push acme docs.site
}

func ExampleEscapeToken() {
	for _, s := range []string{"webhook-fixtures", "my repo", "a.b*c>", "", "🚀"} {
		fmt.Printf("%q\n", schemas.EscapeToken(s))
	}
	// Output:
	// "webhook-fixtures"
	// "my%20repo"
	// "a%2Eb%2Ac%3E"
	// "%"
	// "🚀"
}

func ExampleResultSubject() {
	fmt.Println(schemas.ResultSubject("docs", "acme", "site"))
	fmt.Println(schemas.DLQSubject("docs", "acme", "site"))
	// Output:
	// forgebus.results.docs.acme.site
	// forgebus.dlq.docs.acme.site
}

// A consumer decodes an event's data into the type its type names.
func ExampleEnvelope_DecodeData() {
	b, err := os.ReadFile("testdata/push.envelope.json")
	if err != nil {
		panic(err)
	}
	var env schemas.Envelope
	if err := json.Unmarshal(b, &env); err != nil {
		panic(err)
	}
	switch data := schemas.NewPayload(env.Event()).(type) {
	case *schemas.Push:
		if err := env.DecodeData(data); err != nil {
			panic(err)
		}
		fmt.Println(env.Type, env.Repo, env.Subject)
		fmt.Println("branch:", data.Branch, "commits:", len(data.Commits), "head:", data.After[:7])
		fmt.Println("modified:", data.Commits[0].Modified)
	case *schemas.Unknown:
		fmt.Println("an event without a type of its own:", env.Type)
	}
	// Output:
	// forge.push fixture-admin/webhook-fixtures refs/heads/master
	// branch: master commits: 3 head: 1b06d8d
	// modified: [src/main.go]
}

func ExampleValidate() {
	b, err := os.ReadFile("testdata/push.envelope.json")
	if err != nil {
		panic(err)
	}
	fmt.Println(schemas.Validate(b))

	var env map[string]any
	if err := json.Unmarshal(b, &env); err != nil {
		panic(err)
	}
	delete(env["data"].(map[string]any), "after")
	b, _ = json.Marshal(env)
	err = schemas.Validate(b)
	fmt.Println(errors.Is(err, schemas.ErrInvalid))
	fmt.Println(err)

	env["type"] = "gogs.push"
	b, _ = json.Marshal(env)
	fmt.Println(errors.Is(schemas.Validate(b), schemas.ErrUnknownType))
	// Output:
	// <nil>
	// true
	// document does not match its schema: forge.push data: at "/": missing after
	// true
}

func ExampleSchemaFS() {
	b, err := fs.ReadFile(schemas.SchemaFS(), "push.json")
	if err != nil {
		panic(err)
	}
	var s struct {
		ID string `json:"$id"`
	}
	if err := json.Unmarshal(b, &s); err != nil {
		panic(err)
	}
	fmt.Println(s.ID == schemas.SchemaURI(schemas.EventPush), s.ID)
	// Output:
	// true https://forgebus.dev/schemas/v1/push.json
}
