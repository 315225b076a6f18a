package keys

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"sync"
)

// KEKSize is the size of a key-encryption key: AES-256.
const KEKSize = 32

// FileProvider is the Provider for keys held in files: signing and
// decryption keys and trust anchors come from the tenant files (through
// Tenants, so a reloaded tenant file is used at once), key-encryption keys
// live in a directory of its own as <dir>/<tenant>/kek-<version>.key, 32
// random bytes each, readable by the node's user only.
type FileProvider struct {
	dir     string
	tenants func() Tenants

	mu   sync.Mutex
	keks map[string]*kekRing // by tenant
}

type kekRing struct {
	current int
	keys    map[int][]byte
}

// NewFileProvider returns a provider that keeps key-encryption keys under
// dir (created on first use) and reads everything else from the tenant set
// tenants returns at each call.
func NewFileProvider(dir string, tenants func() Tenants) *FileProvider {
	return &FileProvider{dir: dir, tenants: tenants, keks: map[string]*kekRing{}}
}

var _ Provider = (*FileProvider)(nil)

func (p *FileProvider) material(tenant string) (*Material, error) {
	m, ok := p.tenants().KeyMaterial(tenant)
	if !ok {
		return nil, fmt.Errorf("keys: tenant %q: %w (no tenant file declares it)", tenant, ErrUnknownTenant)
	}
	return m, nil
}

// SigningKey implements Provider.
func (p *FileProvider) SigningKey(ctx context.Context, tenant string) (*KeyPair, error) {
	m, err := p.material(tenant)
	if err != nil {
		return nil, err
	}
	if len(m.Signing) == 0 {
		return nil, fmt.Errorf("keys: tenant %q has no signing key: %w (keys.signing in its tenant file)", tenant, ErrNotConfigured)
	}
	return m.Signing[0], nil
}

// DecryptionKeys implements Provider.
func (p *FileProvider) DecryptionKeys(ctx context.Context, tenant string) ([]*KeyPair, error) {
	m, err := p.material(tenant)
	if err != nil {
		return nil, err
	}
	if len(m.Decryption) == 0 {
		return nil, fmt.Errorf("keys: tenant %q has no decryption key: %w (keys.decryption in its tenant file)", tenant, ErrNotConfigured)
	}
	return slices.Clone(m.Decryption), nil
}

// Trust implements Provider.
func (p *FileProvider) Trust(ctx context.Context, tenant, counterpart string) (*TrustStore, error) {
	m, err := p.material(tenant)
	if err != nil {
		return nil, err
	}
	ts := m.Trust(counterpart)
	if len(ts.Certificates()) == 0 {
		if counterpart == "" {
			return nil, fmt.Errorf("keys: tenant %q trusts no signers: %w (keys.trust.signers in its tenant file)", tenant, ErrNotConfigured)
		}
		return nil, fmt.Errorf("keys: tenant %q trusts no signers for %q: %w (keys.trust.signers or keys.trust.counterparts in its tenant file)", tenant, counterpart, ErrNotConfigured)
	}
	return ts, nil
}

// Certificates implements Provider.
func (p *FileProvider) Certificates(ctx context.Context) ([]Certificate, error) {
	return Certificates(p.tenants()), nil
}

// WrapKey implements Provider with AES-256-GCM: the result is a 12-byte
// nonce, the encrypted key and the 16-byte tag. Besides aad, the tenant id
// and the KEK version are authenticated, so a wrapped key does not unwrap
// for another tenant or under another version even if their KEKs were
// copied.
func (p *FileProvider) WrapKey(ctx context.Context, tenant string, dek, aad []byte) ([]byte, int, error) {
	if _, err := p.material(tenant); err != nil {
		return nil, 0, err
	}
	if len(dek) == 0 {
		return nil, 0, fmt.Errorf("keys: wrap for tenant %q: empty data key", tenant)
	}
	p.mu.Lock()
	ring, err := p.ring(tenant)
	if err != nil {
		p.mu.Unlock()
		return nil, 0, err
	}
	version, kek := ring.current, ring.keys[ring.current]
	p.mu.Unlock()
	aead, err := newGCM(kek)
	if err != nil {
		return nil, 0, err
	}
	nonce := make([]byte, aead.NonceSize())
	rand.Read(nonce)
	return aead.Seal(nonce, nonce, dek, kekAAD(tenant, version, aad)), version, nil
}

// UnwrapKey implements Provider.
func (p *FileProvider) UnwrapKey(ctx context.Context, tenant string, kekVersion int, wrapped, aad []byte) ([]byte, error) {
	if _, err := p.material(tenant); err != nil {
		return nil, err
	}
	p.mu.Lock()
	ring, err := p.ring(tenant)
	if err == nil && ring.keys[kekVersion] == nil {
		err = p.reload(tenant, ring) // another node may have rotated
		if err == nil && ring.keys[kekVersion] == nil {
			err = fmt.Errorf("keys: tenant %q has no key-encryption key version %d in %s", tenant, kekVersion, filepath.Join(p.dir, tenant))
		}
	}
	var kek []byte
	if err == nil {
		kek = ring.keys[kekVersion]
	}
	p.mu.Unlock()
	if err != nil {
		return nil, err
	}
	aead, err := newGCM(kek)
	if err != nil {
		return nil, err
	}
	if len(wrapped) < aead.NonceSize()+aead.Overhead() {
		return nil, fmt.Errorf("keys: unwrap for tenant %q: wrapped key is %d bytes, too short", tenant, len(wrapped))
	}
	dek, err := aead.Open(nil, wrapped[:aead.NonceSize()], wrapped[aead.NonceSize():], kekAAD(tenant, kekVersion, aad))
	if err != nil {
		return nil, fmt.Errorf("keys: unwrap for tenant %q with KEK version %d: authentication failed (wrong associated data, or the wrapped key was altered)", tenant, kekVersion)
	}
	return dek, nil
}

// RotateKEK implements Provider: it writes kek-<n+1>.key beside the newest
// version on disk and uses it for new wraps from now on.
func (p *FileProvider) RotateKEK(ctx context.Context, tenant string) (int, error) {
	if _, err := p.material(tenant); err != nil {
		return 0, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	ring, err := p.ring(tenant)
	if err != nil {
		return 0, err
	}
	if err := p.reload(tenant, ring); err != nil {
		return 0, err
	}
	for v := ring.current + 1; ; v++ {
		kek, err := p.createKEK(tenant, v)
		if errors.Is(err, fs.ErrExist) {
			continue // another process took this version
		}
		if err != nil {
			return 0, err
		}
		ring.keys[v], ring.current = kek, v
		return v, nil
	}
}

func kekAAD(tenant string, version int, aad []byte) []byte {
	b := make([]byte, 0, 32+len(tenant)+len(aad))
	b = append(b, "parzelle-kek\x00"...)
	b = append(b, tenant...)
	b = append(b, 0)
	b = strconv.AppendInt(b, int64(version), 10)
	b = append(b, 0)
	return append(b, aad...)
}

func newGCM(kek []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(kek)
	if err != nil {
		return nil, fmt.Errorf("keys: %w", err)
	}
	return cipher.NewGCM(block)
}

var kekName = regexp.MustCompile(`^kek-([1-9][0-9]{0,8})\.key$`)

// ring returns the tenant's KEKs, reading them or creating version 1 on
// first use. p.mu is held.
func (p *FileProvider) ring(tenant string) (*kekRing, error) {
	if r := p.keks[tenant]; r != nil {
		return r, nil
	}
	if tenant == "" || tenant == "." || tenant == ".." || filepath.Base(tenant) != tenant {
		return nil, fmt.Errorf("keys: %q cannot name a key directory", tenant)
	}
	r := &kekRing{keys: map[int][]byte{}}
	if err := p.reload(tenant, r); err != nil {
		return nil, err
	}
	if r.current == 0 {
		kek, err := p.createKEK(tenant, 1)
		if errors.Is(err, fs.ErrExist) { // another process was quicker
			err = p.reload(tenant, r)
		} else if err == nil {
			r.keys[1], r.current = kek, 1
		}
		if err != nil {
			return nil, err
		}
	}
	p.keks[tenant] = r
	return r, nil
}

// reload reads the tenant's KEK files that r does not hold yet.
func (p *FileProvider) reload(tenant string, r *kekRing) error {
	dir := filepath.Join(p.dir, tenant)
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("keys: read key-encryption keys: %w", err)
	}
	for _, e := range entries {
		m := kekName.FindStringSubmatch(e.Name())
		if m == nil {
			continue
		}
		v, _ := strconv.Atoi(m[1])
		if r.keys[v] != nil {
			continue
		}
		path := filepath.Join(dir, e.Name())
		info, err := e.Info()
		if err != nil {
			return fmt.Errorf("keys: %w", err)
		}
		if perm := info.Mode().Perm(); perm&0o077 != 0 {
			return fmt.Errorf("keys: %s is readable by others (mode %04o); make it 0600 (chmod 600)", path, perm)
		}
		kek, err := os.ReadFile(path)
		if err != nil {
			return fmt.Errorf("keys: %w", err)
		}
		if len(kek) != KEKSize {
			return fmt.Errorf("keys: %s holds %d bytes; a key-encryption key is %d random bytes", path, len(kek), KEKSize)
		}
		r.keys[v] = kek
		r.current = max(r.current, v)
	}
	return nil
}

// createKEK writes a new random KEK as version v, failing with fs.ErrExist
// when that version exists. The file appears complete or not at all.
func (p *FileProvider) createKEK(tenant string, v int) ([]byte, error) {
	dir := filepath.Join(p.dir, tenant)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("keys: create key directory: %w", err)
	}
	kek := make([]byte, KEKSize)
	rand.Read(kek)
	tmp, err := os.CreateTemp(dir, ".kek-*.tmp")
	if err != nil {
		return nil, fmt.Errorf("keys: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(kek); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("keys: write key-encryption key: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("keys: write key-encryption key: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return nil, fmt.Errorf("keys: write key-encryption key: %w", err)
	}
	path := filepath.Join(dir, fmt.Sprintf("kek-%d.key", v))
	if err := os.Link(tmp.Name(), path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return nil, err
		}
		return nil, fmt.Errorf("keys: create %s: %w", path, err)
	}
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return kek, nil
}
