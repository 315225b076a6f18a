package msgbox

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// Group commit of accepted messages.
//
// A message stored alone costs a transaction of a dozen statements, and at
// many concurrent sendMessage calls PostgreSQL spends its time on their
// overhead rather than on the rows. So a small message is not stored by the
// call that accepted it but handed to the server's committer: up to
// maxCommitters goroutines each take the messages that are waiting (up to
// maxGroup of them) and store them together in one transaction (store),
// then answer their calls. A message that finds a committer free is stored
// at once, no timer waits for company: messages wait for one another only
// while every committer is busy, which is when grouping pays.
//
// When a group's transaction fails nothing of it is stored, and each of its
// messages is stored again on its own: a message whose MessageID was used
// (before, or by another message of the group) fails alone with its fault,
// the others are accepted.

const (
	// maxCommitters is how many group transactions run at once. One
	// makes the largest groups, and a register inbox's messages are
	// handed over to the pipeline, and applied there, group by group: at
	// 16 clients it stored 6.7 messages per transaction (2 committers:
	// 3.6) and the pipeline applied 550–570 messages/s instead of 430–470.
	maxCommitters = 1
	// maxGroup and maxGroupBytes bound the messages of one group and
	// their contents (a message larger than maxGroupBytes goes alone).
	maxGroup      = 64
	maxGroupBytes = 16 << 20
	// commitTimeout bounds a group's transaction (and its retries); it
	// does not end with the calls that wait for it.
	commitTimeout = time.Minute
)

// committer is the queue of messages waiting to be stored. Its zero value
// is ready to use; its goroutines run only while messages wait.
type committer struct {
	mu      sync.Mutex
	queue   []*waiting
	running int
}

// waiting is a message and the call that waits for its outcome.
type waiting struct {
	m        *accepted
	done     chan error
	answered bool // by the committer
}

// commit stores a small message, grouped with the others waiting, and
// returns once it is committed (or failed).
func (s *Store) commit(m *accepted) error {
	w := &waiting{m: m, done: make(chan error, 1)}
	c := &s.commits
	c.mu.Lock()
	c.queue = append(c.queue, w)
	start := c.running < maxCommitters
	if start {
		c.running++
	}
	c.mu.Unlock()
	if start {
		go s.runCommitter()
	}
	return <-w.done
}

// runCommitter stores groups until no message waits.
func (s *Store) runCommitter() {
	for {
		group := s.commits.take()
		if group == nil {
			return
		}
		s.storeGroup(group)
	}
}

// take removes the next group from the queue, or returns nil (and counts
// the calling committer as stopped) when the queue is empty.
func (c *committer) take() []*waiting {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.queue) == 0 {
		c.running--
		return nil
	}
	n, size := 1, c.queue[0].m.size
	for n < len(c.queue) && n < maxGroup && size+c.queue[n].m.size <= maxGroupBytes {
		size += c.queue[n].m.size
		n++
	}
	group := make([]*waiting, n)
	copy(group, c.queue)
	rest := copy(c.queue, c.queue[n:])
	clear(c.queue[rest:])
	c.queue = c.queue[:rest]
	return group
}

// storeGroup stores the group in one transaction, or, if that fails, each
// message on its own, and answers every call.
func (s *Store) storeGroup(group []*waiting) {
	ctx, cancel := context.WithTimeout(context.Background(), commitTimeout)
	defer cancel()
	defer func() {
		// A panic ends the calls, not the node (as net/http would for a
		// handler); a call answered before keeps its answer.
		if r := recover(); r != nil {
			s.log.Error("msgbox: storing accepted messages panicked", "panic", r)
			for _, w := range group {
				w.answer(fmt.Errorf("msgbox: store messages: panic: %v", r))
			}
		}
	}()
	ms := make([]*accepted, len(group))
	for i, w := range group {
		ms[i] = w.m
	}
	err := s.store(ctx, ms)
	if err == nil || len(group) == 1 {
		for _, w := range group {
			w.answer(err)
		}
		return
	}
	s.log.Info("msgbox: a group of accepted messages failed; storing each on its own", "messages", len(group), "error", err)
	for _, w := range group {
		w.answer(s.store(ctx, []*accepted{w.m}))
	}
}

// answer gives the waiting call its outcome, unless it has one.
func (w *waiting) answer(err error) {
	if !w.answered {
		w.answered = true
		w.done <- err
	}
}

// MaxCommitters is how many group transactions run at once.
const MaxCommitters = maxCommitters

// Waiting returns how many accepted messages wait for a committer (tests
// hold the committer to see groups form).
func (s *Store) Waiting() int {
	s.commits.mu.Lock()
	defer s.commits.mu.Unlock()
	return len(s.commits.queue)
}
