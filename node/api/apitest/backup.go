package apitest

import (
	"io"
)

// FakeBackup is what a Fake's Backup writes until SetBackup changes it.
const FakeBackup = "fake database backup\n"

// Backup implements api.Backend: it writes FakeBackup, or what SetBackup
// set, and returns the error SetBackup set.
func (f *Fake) Backup(w io.Writer) error {
	f.mu.Lock()
	data, err := f.backupData, f.backupErr
	f.mu.Unlock()
	if data == nil && err == nil {
		data = []byte(FakeBackup)
	}
	if len(data) > 0 {
		if _, werr := w.Write(data); werr != nil {
			return werr
		}
	}
	return err
}

// SetBackup makes Backup write data and then fail with err (when not
// nil): with no data, the failure comes before the first byte.
func (f *Fake) SetBackup(data []byte, err error) {
	f.mu.Lock()
	f.backupData, f.backupErr = data, err
	f.mu.Unlock()
}
