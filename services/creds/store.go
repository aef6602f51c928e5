package creds

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nkeys"
)

// File names inside a store's directory.
const (
	OperatorCreds = "operator.creds"
	SystemCreds   = "system.creds"
	accountJWT    = "account.jwt"
	usersFile     = "users.json"
	operatorSeed  = "operator.nk"
	accountSeed   = "account.nk"
	systemSeed    = "system.nk"
)

// Account names as the server shows them.
const (
	AccountName = "FORGE"
	SystemName  = "SYS"
)

// User is one issued user, as "forgebus creds list" shows it.
type User struct {
	Spec
	PublicKey string    `json:"public_key"`
	Issued    time.Time `json:"issued"`
	ExpiresAt time.Time `json:"expires_at,omitzero"`
	RevokedAt time.Time `json:"revoked_at,omitzero"`
}

// Store is a directory of keys (0700, files 0600): the operator, the FORGE
// and system accounts, the current account JWT and the issued users.
type Store struct {
	dir           string
	op, acc, sys  nkeys.KeyPair
	opPub, accPub string
	sysPub        string
}

// Open opens the store in dir, creating its keys on first use. The account
// JWT is re-signed when missing and otherwise kept with its revocations.
func Open(dir string) (*Store, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("creds dir %s: %w", dir, err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return nil, fmt.Errorf("creds dir %s: %w", dir, err)
	}
	s := &Store{dir: dir}
	var err error
	if s.op, err = loadOrCreate(filepath.Join(dir, operatorSeed), nkeys.CreateOperator); err != nil {
		return nil, err
	}
	if s.acc, err = loadOrCreate(filepath.Join(dir, accountSeed), nkeys.CreateAccount); err != nil {
		return nil, err
	}
	if s.sys, err = loadOrCreate(filepath.Join(dir, systemSeed), nkeys.CreateAccount); err != nil {
		return nil, err
	}
	s.opPub, _ = s.op.PublicKey()
	s.accPub, _ = s.acc.PublicKey()
	s.sysPub, _ = s.sys.PublicKey()
	if _, err := os.Stat(filepath.Join(dir, accountJWT)); errors.Is(err, fs.ErrNotExist) {
		if _, err := s.signAccount(nil); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// Dir is the store's directory.
func (s *Store) Dir() string { return s.dir }

// Path is the path of a file in the store.
func (s *Store) Path(name string) string { return filepath.Join(s.dir, name) }

// AccountPublicKey is the FORGE account's public key.
func (s *Store) AccountPublicKey() string { return s.accPub }

func loadOrCreate(path string, create func() (nkeys.KeyPair, error)) (nkeys.KeyPair, error) {
	seed, err := os.ReadFile(path)
	if err == nil {
		kp, err := nkeys.FromSeed(seed)
		if err != nil {
			return nil, fmt.Errorf("read key %s: %w", path, err)
		}
		return kp, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("read key %s: %w", path, err)
	}
	kp, err := create()
	if err != nil {
		return nil, fmt.Errorf("create key %s: %w", path, err)
	}
	seed, err = kp.Seed()
	if err != nil {
		return nil, fmt.Errorf("create key %s: %w", path, err)
	}
	if err := writeFile(path, seed); err != nil {
		return nil, err
	}
	return kp, nil
}

// writeFile writes data to path with mode 0600, atomically.
func writeFile(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// OperatorJWT is the operator's self-signed JWT naming the system account.
func (s *Store) OperatorJWT() (string, error) {
	oc := jwt.NewOperatorClaims(s.opPub)
	oc.Name = "forgebus"
	oc.SystemAccount = s.sysPub
	t, err := oc.Encode(s.op)
	if err != nil {
		return "", fmt.Errorf("sign operator: %w", err)
	}
	return t, nil
}

// SystemJWT is the system account's JWT.
func (s *Store) SystemJWT() (string, error) {
	ac := jwt.NewAccountClaims(s.sysPub)
	ac.Name = SystemName
	t, err := ac.Encode(s.op)
	if err != nil {
		return "", fmt.Errorf("sign system account: %w", err)
	}
	return t, nil
}

// AccountJWT is the FORGE account's current JWT, revocations included.
func (s *Store) AccountJWT() (string, error) {
	b, err := os.ReadFile(s.Path(accountJWT))
	if err != nil {
		return "", fmt.Errorf("read account jwt: %w", err)
	}
	return string(b), nil
}

// signAccount signs the FORGE account with JetStream and the given
// revocations, and stores it.
func (s *Store) signAccount(revoked []User) (string, error) {
	ac := jwt.NewAccountClaims(s.accPub)
	ac.Name = AccountName
	ac.Limits.JetStreamLimits = jwt.JetStreamLimits{MemoryStorage: -1, DiskStorage: -1, Streams: -1, Consumer: -1}
	for _, u := range revoked {
		ac.RevokeAt(u.PublicKey, u.RevokedAt)
	}
	t, err := ac.Encode(s.op)
	if err != nil {
		return "", fmt.Errorf("sign account: %w", err)
	}
	if err := writeFile(s.Path(accountJWT), []byte(t)); err != nil {
		return "", err
	}
	return t, nil
}

// Users lists every issued user.
func (s *Store) Users() ([]User, error) {
	b, err := os.ReadFile(s.Path(usersFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read users: %w", err)
	}
	var us []User
	if err := json.Unmarshal(b, &us); err != nil {
		return nil, fmt.Errorf("read users %s: %w", s.Path(usersFile), err)
	}
	return us, nil
}

func (s *Store) saveUsers(us []User) error {
	b, err := json.MarshalIndent(us, "", "  ")
	if err != nil {
		return fmt.Errorf("save users: %w", err)
	}
	return writeFile(s.Path(usersFile), append(b, '\n'))
}

// Issue creates a user for spec and returns its credentials file's
// content. A name is issued once; revoke it to issue it again.
func (s *Store) Issue(spec Spec) ([]byte, User, error) {
	if err := spec.Validate(); err != nil {
		return nil, User{}, err
	}
	us, err := s.Users()
	if err != nil {
		return nil, User{}, err
	}
	keep := us[:0]
	for _, u := range us {
		if u.Name != spec.Name {
			keep = append(keep, u)
			continue
		}
		if u.RevokedAt.IsZero() {
			return nil, User{}, fmt.Errorf("%w: %s (revoke it first)", ErrExists, spec.Name)
		}
		// A revoked user's entry stays in the account JWT; list it under its key.
		u.Name = u.Name + "@" + u.PublicKey[:8]
		keep = append(keep, u)
	}
	us = keep
	creds, u, err := s.user(spec)
	if err != nil {
		return nil, User{}, err
	}
	us = append(us, u)
	if err := s.saveUsers(us); err != nil {
		return nil, User{}, err
	}
	return creds, u, nil
}

// user signs a new user of the FORGE account for spec.
func (s *Store) user(spec Spec) ([]byte, User, error) {
	kp, err := nkeys.CreateUser()
	if err != nil {
		return nil, User{}, fmt.Errorf("create user key: %w", err)
	}
	pub, _ := kp.PublicKey()
	uc := jwt.NewUserClaims(pub)
	uc.Name = spec.Name
	uc.IssuerAccount = "" // signed by the account key itself
	uc.Permissions = spec.Permissions()
	uc.Tags.Add("forgebus-role:" + spec.Role)
	now := time.Now().UTC().Truncate(time.Second)
	u := User{Spec: spec, PublicKey: pub, Issued: now}
	if spec.Expires > 0 {
		u.ExpiresAt = now.Add(spec.Expires)
		uc.Expires = u.ExpiresAt.Unix()
	}
	t, err := uc.Encode(s.acc)
	if err != nil {
		return nil, User{}, fmt.Errorf("sign user %s: %w", spec.Name, err)
	}
	seed, _ := kp.Seed()
	creds, err := jwt.FormatUserConfig(t, seed)
	if err != nil {
		return nil, User{}, fmt.Errorf("format creds %s: %w", spec.Name, err)
	}
	return creds, u, nil
}

// Revoke revokes the named user and returns the re-signed account JWT,
// which the caller pushes to the servers ([Push]).
func (s *Store) Revoke(name string) (string, error) {
	us, err := s.Users()
	if err != nil {
		return "", err
	}
	i := slices.IndexFunc(us, func(u User) bool { return u.Name == name })
	if i < 0 {
		return "", fmt.Errorf("%w: %s", ErrNotFound, name)
	}
	if us[i].RevokedAt.IsZero() {
		// One second later than issue: the server revokes JWTs issued at
		// or before this time.
		us[i].RevokedAt = time.Now().UTC().Truncate(time.Second).Add(time.Second)
	}
	var revoked []User
	for _, u := range us {
		if !u.RevokedAt.IsZero() {
			revoked = append(revoked, u)
		}
	}
	t, err := s.signAccount(revoked)
	if err != nil {
		return "", err
	}
	if err := s.saveUsers(us); err != nil {
		return "", err
	}
	return t, nil
}

// EnsureFile writes the credentials of spec to name in the store unless
// that file exists, and returns its path. The embedded server's processes
// use these files.
func (s *Store) EnsureFile(name string, spec Spec) (string, error) {
	path := s.Path(name)
	if _, err := os.Stat(path); err == nil {
		return path, nil
	}
	var creds []byte
	var err error
	if spec.Role == "system" {
		creds, err = s.systemUser()
	} else {
		creds, _, err = s.Issue(spec)
		if errors.Is(err, ErrExists) {
			// The file was removed: issue the name anew.
			if _, err = s.Revoke(spec.Name); err == nil {
				creds, _, err = s.Issue(spec)
			}
		}
	}
	if err != nil {
		return "", err
	}
	if err := writeFile(path, creds); err != nil {
		return "", err
	}
	return path, nil
}

// systemUser signs a user of the system account, which may push account
// updates.
func (s *Store) systemUser() ([]byte, error) {
	kp, err := nkeys.CreateUser()
	if err != nil {
		return nil, fmt.Errorf("create system user key: %w", err)
	}
	pub, _ := kp.PublicKey()
	uc := jwt.NewUserClaims(pub)
	uc.Name = "system"
	t, err := uc.Encode(s.sys)
	if err != nil {
		return nil, fmt.Errorf("sign system user: %w", err)
	}
	seed, _ := kp.Seed()
	return jwt.FormatUserConfig(t, seed)
}

// Workers are the workers whose credentials the embedded server creates.
var Workers = []string{"docs", "models", "envsync"}

// ServiceFiles are the credentials files the embedded server's processes
// use, by role name (also the file name without .creds).
func ServiceFiles(workers []string) map[string]Spec {
	m := map[string]Spec{
		"operator":     {Role: RoleOperator},
		"ingest":       {Role: RoleIngest},
		"worker-audit": {Role: RoleAudit},
	}
	for _, w := range workers {
		m["worker-"+w] = Spec{Role: RoleWorker, Worker: w}
	}
	return m
}

// EnsureServices writes operator.creds, system.creds and each service
// role's file (ingest.creds, worker-audit.creds, worker-<w>.creds) when missing.
func (s *Store) EnsureServices(workers []string) error {
	if _, err := s.EnsureFile(SystemCreds, Spec{Role: "system", Name: "system"}); err != nil {
		return err
	}
	for name, spec := range ServiceFiles(workers) {
		if _, err := s.EnsureFile(name+".creds", spec); err != nil {
			return err
		}
	}
	return nil
}
