package register

import (
	"context"
	"time"

	"github.com/parzelle/parzelle/sealing"
)

// ReencryptOnce runs one batch of a rotation's re-encryption, as a job that
// stops after it would have.
func ReencryptOnce(ctx context.Context, s *Store, tenantID string, version int) (int, error) {
	n, _, err := s.reencrypt(ctx, tenantID, version)
	return n, err
}

// SetRotationTiming sets the re-encryption batch size and how long nodes
// cache the current key version, until restore is called.
func SetRotationTiming(batch int, ttl time.Duration) (restore func()) {
	oldBatch, oldTTL := reencryptBatch, sealing.CurrentTTL
	reencryptBatch, sealing.CurrentTTL = batch, ttl
	return func() { reencryptBatch, sealing.CurrentTTL = oldBatch, oldTTL }
}
