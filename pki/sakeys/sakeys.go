// Package sakeys reads the service-account signing key pair (sa.key, sa.pub) and computes its rotation in
// three stages, the procedure of kubernetes/kubernetes#34029; each stage is a set of files that the caller
// commits in one crash-safe transaction (package phases' rotation):
//
//	steady    sa.key signs; sa.pub holds its public key only. Next: prepare.
//	prepared  sa.key.next (0600) holds a new private key whose public key was appended to sa.pub: every
//	          kube-apiserver restarted with it accepts tokens signed by either key. sa.key still signs.
//	          Next: promote.
//	promoted  sa.key is the new key (sa.key.next is gone); sa.pub still holds the old public key, so tokens
//	          signed before promote stay valid. Next: prune, once old tokens have expired or been replaced.
//
// prune rewrites sa.pub with sa.key's public key alone and returns to steady. The stage is read from the
// files: sa.key.next present means prepared; otherwise more than one distinct key in sa.pub means
// promoted. sa.key's public key must always be in sa.pub (tokens it signs would be rejected otherwise),
// and sa.key.next's too; anything else was edited by hand and is refused with what is wrong.
//
// kube-apiserver reads --service-account-key-file (sa.pub), --service-account-signing-key-file (sa.key)
// and kube-controller-manager --service-account-private-key-file (sa.key) at start: restart them after
// every stage.
package sakeys

import (
	"bytes"
	"crypto"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"

	"k8scrypto.dev/k8scrypto/pki"
)

// File names under the certificate directory, as kubeadm names them: the one place that spells them.
const (
	KeyName  = "sa.key"
	PubName  = "sa.pub"
	NextName = "sa.key.next"
)

// Stage is where the key pair is in a rotation.
type Stage string

const (
	StageSteady   Stage = "steady"
	StagePrepared Stage = "prepared"
	StagePromoted Stage = "promoted"
)

// Key roles in sa.pub.
const (
	RoleSigning = "signing" // public key of sa.key
	RoleNext    = "next"    // public key of sa.key.next
	RoleOld     = "old"     // verifies tokens signed by a previous key
)

// KeyInfo describes a key by its public half only.
type KeyInfo struct {
	// SHA256 is the SHA-256 of the public key's PKIX DER, as in the audit log.
	SHA256 string `json:"sha256"`
	// KeyID is the "kid" kube-apiserver gives the key in tokens and at /openid/v1/jwks: the same hash,
	// unpadded base64url.
	KeyID     string `json:"keyID"`
	Algorithm string `json:"algorithm"`
	Role      string `json:"role,omitempty"`
}

// State is what the files say.
type State struct {
	Dir   string    `json:"certificatesDir"`
	Stage Stage     `json:"stage"`
	Next  string    `json:"next"` // what to run next: filled by the caller, which knows the commands
	Key   KeyInfo   `json:"key"`
	New   *KeyInfo  `json:"newKey,omitempty"` // sa.key.next
	Pub   []KeyInfo `json:"publicKeys"`       // sa.pub, in file order, duplicates dropped

	// LeftoverNext is an sa.key.next identical to sa.key: a promote interrupted after replacing sa.key.
	// The stage is then read as if it were absent; the next promote or prune removes it.
	LeftoverNext bool `json:"leftoverNext,omitempty"`

	key     crypto.Signer
	pubData []byte
	pubs    []crypto.PublicKey
	next    []byte
}

func (s *State) path(name string) string { return filepath.Join(s.Dir, name) }

// Describe is the KeyInfo of a public key in role: its fingerprint, the kid kube-apiserver gives it, its
// algorithm.
func Describe(pub crypto.PublicKey, role string) KeyInfo { return describe(pub, role) }

func describe(pub crypto.PublicKey, role string) KeyInfo {
	fp, _ := pki.PublicKeyFingerprint(pub)
	alg := string(pki.AlgorithmOf(pub))
	if alg == "" {
		alg = fmt.Sprintf("%T", pub)
	}
	sum, _ := hex.DecodeString(fp)
	return KeyInfo{SHA256: fp, KeyID: base64.RawURLEncoding.EncodeToString(sum), Algorithm: alg, Role: role}
}

// readRegular reads a key file of the certificate directory: a regular file (symbolic links, FIFOs and
// devices are refused) of bounded size.
func readRegular(path string) ([]byte, error) {
	return pki.ReadFileNoFollow(path, pki.MaxPEMSize)
}

// Problem is what is wrong with a key file, in a FileError.
type Problem int

const (
	KeyMissing     Problem = iota + 1 // sa.key does not exist
	PubMissing                        // sa.pub does not exist (sa.key does)
	NextUnreadable                    // sa.key.next, staged by an unfinished prepare, does not parse
	NextNotInPub                      // sa.key.next's public key is not in sa.pub
)

// FileError is a key file that stops Read. It says what is wrong; the caller, which knows the commands,
// adds which one repairs it (the message is written to be continued with ": <what to run>").
type FileError struct {
	Path    string
	Problem Problem
	Pub     string // sa.pub, for NextNotInPub
	Err     error  // the parse error, for NextUnreadable
}

func (e *FileError) Error() string {
	switch e.Problem {
	case KeyMissing:
		return e.Path + " does not exist"
	case PubMissing:
		return e.Path + " does not exist: restore it from a backup"
	case NextUnreadable:
		return fmt.Sprintf("%s: %v; it is the key staged by an unfinished prepare", e.Path, e.Err)
	}
	return fmt.Sprintf("%s exists but its public key is not in %s (hand-edited, or sa.pub was restored)", e.Path, e.Pub)
}

func (e *FileError) Unwrap() error { return e.Err }

// Read loads and checks the key files in dir and says which stage they are in.
func Read(dir string) (*State, error) { return ReadWith(dir, readRegular) }

// ReadWith is Read with the files read by readFile (an error wrapping fs.ErrNotExist for a missing file): a
// dry run reads the files a step would leave, its planned files over those on disk.
func ReadWith(dir string, readFile func(path string) ([]byte, error)) (*State, error) {
	readRegular := readFile
	s := &State{Dir: dir}
	keyPath, pubPath, nextPath := s.path(KeyName), s.path(PubName), s.path(NextName)
	data, err := readRegular(keyPath)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, &FileError{Path: keyPath, Problem: KeyMissing}
	}
	if err != nil {
		return nil, err
	}
	if s.key, err = pki.ParsePrivateKey(data); err != nil {
		return nil, fmt.Errorf("%s: %w (restore it from a backup)", keyPath, err)
	}
	s.pubData, err = readRegular(pubPath)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, &FileError{Path: pubPath, Problem: PubMissing}
	}
	if err != nil {
		return nil, err
	}
	all, err := pki.ParsePublicKeys(s.pubData)
	if err != nil {
		return nil, fmt.Errorf("%s: %w (restore it from a backup)", pubPath, err)
	}
	for _, p := range all {
		if indexOf(s.pubs, p) < 0 {
			s.pubs = append(s.pubs, p)
		}
	}
	if indexOf(s.pubs, s.key.Public()) < 0 {
		return nil, fmt.Errorf("%s does not contain the public key of %s: tokens it signs would be rejected; restore both from the same backup", pubPath, keyPath)
	}
	s.Key = describe(s.key.Public(), RoleSigning)

	var next crypto.Signer
	s.next, err = readRegular(nextPath)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return nil, err
	default:
		if next, err = pki.ParsePrivateKey(s.next); err != nil {
			return nil, &FileError{Path: nextPath, Problem: NextUnreadable, Err: err}
		}
		if pki.PublicKeysEqual(next.Public(), s.key.Public()) {
			s.LeftoverNext, next = true, nil
		} else if indexOf(s.pubs, next.Public()) < 0 {
			return nil, &FileError{Path: nextPath, Problem: NextNotInPub, Pub: pubPath}
		}
	}

	for _, p := range s.pubs {
		role := RoleOld
		switch {
		case pki.PublicKeysEqual(p, s.key.Public()):
			role = RoleSigning
		case next != nil && pki.PublicKeysEqual(p, next.Public()):
			role = RoleNext
		}
		s.Pub = append(s.Pub, describe(p, role))
	}
	switch {
	case next != nil:
		s.Stage = StagePrepared
		ki := describe(next.Public(), RoleNext)
		s.New = &ki
	case len(s.pubs) > 1:
		s.Stage = StagePromoted
	default:
		s.Stage = StageSteady
	}
	return s, nil
}

func indexOf(keys []crypto.PublicKey, k crypto.PublicKey) int {
	for i, p := range keys {
		if pki.PublicKeysEqual(p, k) {
			return i
		}
	}
	return -1
}

// StageError is a step run in the wrong stage. Its message ends with State.Next, which the caller fills.
type StageError struct {
	Op    string
	State *State
}

func (e *StageError) Error() string {
	detail := map[Stage]string{
		StageSteady:   "sa.pub holds only the public key of sa.key",
		StagePrepared: "sa.key.next is staged and its public key is in sa.pub; sa.key still signs",
		StagePromoted: fmt.Sprintf("sa.key is the new key and sa.pub still holds %d older public key(s)", len(e.State.Pub)-1),
	}[e.State.Stage]
	return fmt.Sprintf("%s refused: the service-account keys in %s are in stage %s (%s); next: %s", e.Op, e.State.Dir, e.State.Stage, detail, e.State.Next)
}

// Step is what a stage change writes: Files, replaced in one transaction, then Obsolete, files that the
// change leaves without a purpose (sa.key.next once sa.key holds its key), removed after the commit. A
// step without files only removes (it finishes an earlier one). Removed are the public keys prune drops.
type Step struct {
	Files    []pki.File
	Obsolete []string
	Removed  []KeyInfo
}

// Prepare stages newKey as sa.key.next and appends its public key to sa.pub. Allowed in stage steady.
func (s *State) Prepare(newKey crypto.Signer) (*Step, error) {
	if s.Stage != StageSteady {
		return nil, &StageError{Op: "prepare", State: s}
	}
	if indexOf(s.pubs, newKey.Public()) >= 0 {
		return nil, errors.New("the new service-account key is already in sa.pub (the key source returned an old key)")
	}
	keyPEM, err := pki.EncodePrivateKey(newKey)
	if err != nil {
		return nil, err
	}
	pubPEM, err := pki.EncodePublicKey(newKey.Public())
	if err != nil {
		return nil, err
	}
	pub := bytes.Clone(s.pubData)
	if len(pub) > 0 && !bytes.HasSuffix(pub, []byte("\n")) {
		pub = append(pub, '\n')
	}
	pub = append(pub, pubPEM...)
	return &Step{Files: []pki.File{
		{Path: s.path(NextName), Data: keyPEM, Mode: pki.ModeKey},
		{Path: s.path(PubName), Data: pub, Mode: pki.ModeKey},
	}}, nil
}

// Promote makes sa.key.next the signing key sa.key; sa.pub keeps every public key, and sa.key.next is then
// obsolete. Allowed in stage prepared, and to finish a promote that was interrupted before it removed
// sa.key.next (then only the removal is left).
func (s *State) Promote() (*Step, error) {
	if s.LeftoverNext {
		return &Step{Obsolete: []string{s.path(NextName)}}, nil
	}
	if s.Stage != StagePrepared {
		return nil, &StageError{Op: "promote", State: s}
	}
	// A crash between the commit and the removal leaves sa.key.next identical to sa.key, which Read
	// reports as LeftoverNext.
	return &Step{
		Files:    []pki.File{{Path: s.path(KeyName), Data: s.next, Mode: pki.ModeKey}},
		Obsolete: []string{s.path(NextName)},
	}, nil
}

// Prune rewrites sa.pub with the public key of sa.key alone; tokens signed by older keys stop being
// accepted once the apiservers restart. Allowed in stage promoted.
func (s *State) Prune() (*Step, error) {
	if s.Stage != StagePromoted {
		return nil, &StageError{Op: "prune", State: s}
	}
	pubPEM, err := pki.EncodePublicKey(s.key.Public())
	if err != nil {
		return nil, err
	}
	st := &Step{Files: []pki.File{{Path: s.path(PubName), Data: pubPEM, Mode: pki.ModeKey}}}
	for _, k := range s.Pub {
		if k.Role != RoleSigning {
			st.Removed = append(st.Removed, k)
		}
	}
	if s.LeftoverNext {
		st.Obsolete = []string{s.path(NextName)}
	}
	return st, nil
}

// Files lists the files a step may change, for backups.
func Files(dir string) []string {
	return []string{filepath.Join(dir, KeyName), filepath.Join(dir, PubName), filepath.Join(dir, NextName)}
}
