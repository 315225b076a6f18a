package xmlenc

import "errors"

// Errors a caller can tell apart with errors.Is. Each returned error wraps
// one of them and adds what exactly was found.
var (
	// ErrNoKey: none of our decryption keys is a recipient of the
	// EncryptedData (the message was encrypted for someone else, or our
	// key is not configured).
	ErrNoKey = errors.New("xmlenc: no decryption key for this recipient")
	// ErrWrongKey: an EncryptedKey names our certificate, but its key
	// transport does not decrypt with our private key (wrong key file, or
	// the encrypted key was damaged).
	ErrWrongKey = errors.New("xmlenc: the encrypted key names our certificate but does not decrypt with our private key")
	// ErrDecryptionFailed is the one answer for every failure of the
	// symmetric decryption itself: a GCM tag mismatch, bad CBC padding, or
	// CBC plaintext that does not fit the document. It is deliberately
	// uniform so that it cannot serve as a padding oracle.
	ErrDecryptionFailed = errors.New("xmlenc: decryption failed (wrong key, or the ciphertext was damaged or tampered with)")
	// ErrUnsupportedAlgorithm names an algorithm URI this package does not
	// implement or refuses (rsa-1_5).
	ErrUnsupportedAlgorithm = errors.New("xmlenc: unsupported algorithm")
	// ErrMalformed: the EncryptedData or EncryptedKey does not have the
	// structure XML Encryption prescribes (missing CipherData, bad base64,
	// truncated ciphertext, …).
	ErrMalformed = errors.New("xmlenc: malformed encrypted data")
	// ErrCipherReference: a CipherReference cannot be resolved (no such MIME
	// part, or no resolver given).
	ErrCipherReference = errors.New("xmlenc: cannot resolve CipherReference")
	// ErrTooLarge: the ciphertext exceeds the configured limit.
	ErrTooLarge = errors.New("xmlenc: ciphertext exceeds the size limit")
)
