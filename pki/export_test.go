package pki

import "encoding/json"

// Internals for the external tests, which need pkitest (and pkitest imports pki).
const (
	JournalName = journalName
	TmpSuffix   = tmpSuffix
	OldSuffix   = oldSuffix
)

// JournalEntry mirrors journalEntry for tests that lay out an interrupted transaction by hand.
type JournalEntry = journalEntry

// MarshalJournal encodes a journal as Commit writes it.
func MarshalJournal(rollback bool, entries []JournalEntry) []byte {
	data, _ := json.Marshal(journal{Rollback: rollback, Entries: entries})
	return data
}
