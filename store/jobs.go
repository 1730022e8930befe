package store

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Job is a durable timer: at Due, the queue runs the handler of Kind with
// it. (Kind, ID) names the job; scheduling the same name again replaces it.
type Job struct {
	// Kind selects the handler (Queue.Handle). Not empty, no "/".
	Kind string
	// ID tells jobs of one kind apart, such as a lease's CID. Not empty.
	ID string
	// Due is when the job should run. The zero time means now.
	Due time.Time
	// Data is given to the handler as is.
	Data []byte
}

// Job keys (see the package documentation):
//
//	v1/job/<kind>/<id>                          -> jobValue
//	v1/jobdue/<8-byte due>/<kind>/<id>          -> empty
//
// The due index sorts by time: 8 bytes big-endian of the due time in unix
// nanoseconds with the sign bit flipped, so that byte order is time order.
var (
	jobPrefix    = Prefix("job")
	jobDuePrefix = Prefix("jobdue")
)

// jobValue layout: version byte (1), due (8 bytes, as in the index), a
// random 8-byte stamp that differs on every Schedule, then Data. The stamp
// lets the queue tell "rescheduled meanwhile" from "still the job I ran",
// even when the new Due and Data are the same.
const (
	jobValueVersion = 1
	jobValueHeader  = 1 + 8 + 8
)

func validJobName(kind, id string) error {
	switch {
	case kind == "":
		return fmt.Errorf("job kind is empty: %w", ErrInvalid)
	case strings.Contains(kind, "/"):
		return fmt.Errorf("job kind %q contains '/': %w", kind, ErrInvalid)
	case id == "":
		return fmt.Errorf("job %s: ID is empty: %w", kind, ErrInvalid)
	}
	return nil
}

func jobKey(kind, id string) []byte { return Key("job", kind, id) }

func dueBytes(due time.Time) [8]byte {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(dueNanos(due))^(1<<63))
	return b
}

func dueNanos(due time.Time) int64 {
	if due.IsZero() {
		return 0
	}
	return due.UnixNano()
}

func dueFromBytes(b []byte) time.Time {
	return time.Unix(0, int64(binary.BigEndian.Uint64(b)^(1<<63))).UTC()
}

func jobDueKey(due [8]byte, kind, id string) []byte {
	k := make([]byte, 0, len(jobDuePrefix)+8+1+len(kind)+1+len(id))
	k = append(k, jobDuePrefix...)
	k = append(k, due[:]...)
	k = append(k, '/')
	k = append(k, kind...)
	k = append(k, '/')
	k = append(k, id...)
	return k
}

// parseJobDueKey splits a due-index key.
func parseJobDueKey(k []byte) (due time.Time, kind, id string, ok bool) {
	rest, found := bytes.CutPrefix(k, jobDuePrefix)
	if !found || len(rest) < 10 || rest[8] != '/' {
		return time.Time{}, "", "", false
	}
	due = dueFromBytes(rest[:8])
	kindB, idB, found := bytes.Cut(rest[9:], []byte{'/'})
	if !found {
		return time.Time{}, "", "", false
	}
	return due, string(kindB), string(idB), true
}

func encodeJob(j Job) ([]byte, error) {
	v := make([]byte, jobValueHeader, jobValueHeader+len(j.Data))
	v[0] = jobValueVersion
	d := dueBytes(j.Due)
	copy(v[1:9], d[:])
	if _, err := rand.Read(v[9:17]); err != nil {
		return nil, err
	}
	return append(v, j.Data...), nil
}

func decodeJob(kind, id string, v []byte) (Job, error) {
	if len(v) < jobValueHeader || v[0] != jobValueVersion {
		return Job{}, fmt.Errorf("store: job %s/%s: stored value has unknown format (version %d, %d bytes)",
			kind, id, firstByte(v), len(v))
	}
	j := Job{Kind: kind, ID: id, Due: dueFromBytes(v[1:9])}
	if len(v) > jobValueHeader {
		j.Data = append([]byte(nil), v[jobValueHeader:]...)
	}
	return j, nil
}

func firstByte(v []byte) int {
	if len(v) == 0 {
		return -1
	}
	return int(v[0])
}

// Schedule inserts the job, or replaces the job of the same Kind and ID
// with the new Due and Data. Write it in the same transaction as the state
// that causes it; a running Queue wakes up after the commit if the job is
// due earlier than what it waits for.
func (t *Txn) Schedule(j Job) error {
	if err := validJobName(j.Kind, j.ID); err != nil {
		return fmt.Errorf("store: schedule: %w", err)
	}
	if err := t.unschedule(j.Kind, j.ID); err != nil {
		return err
	}
	v, err := encodeJob(j)
	if err != nil {
		return fmt.Errorf("store: schedule %s/%s: %w", j.Kind, j.ID, err)
	}
	if err := t.set(jobKey(j.Kind, j.ID), v); err != nil {
		return err
	}
	if err := t.set(jobDueKey(dueBytes(j.Due), j.Kind, j.ID), nil); err != nil {
		return err
	}
	t.scheduled = true
	return nil
}

// Cancel removes the job; a missing job is not an error.
func (t *Txn) Cancel(kind, id string) error {
	if err := validJobName(kind, id); err != nil {
		return fmt.Errorf("store: cancel: %w", err)
	}
	return t.unschedule(kind, id)
}

// unschedule deletes the job and its index entry, if any.
func (t *Txn) unschedule(kind, id string) error {
	old, err := t.Get(jobKey(kind, id))
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if len(old) >= 9 {
		var d [8]byte
		copy(d[:], old[1:9])
		if err := t.delete(jobDueKey(d, kind, id)); err != nil {
			return err
		}
	}
	return t.delete(jobKey(kind, id))
}

// Job returns the stored job, or ErrNotFound.
func (t *Txn) Job(kind, id string) (Job, error) {
	if err := validJobName(kind, id); err != nil {
		return Job{}, fmt.Errorf("store: job: %w", err)
	}
	v, err := t.Get(jobKey(kind, id))
	if err != nil {
		return Job{}, err
	}
	return decodeJob(kind, id, v)
}
