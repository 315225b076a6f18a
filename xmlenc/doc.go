// Package xmlenc is W3C XML Encryption in the profile OSCI 1.2 uses, built
// on the standard library's crypto: it decrypts and produces
// xenc:EncryptedData, and encrypts or decrypts elements of a document in
// place by splicing its source bytes.
//
// Decrypt takes an EncryptedData parsed by xmlsafe, our decryption keys and
// a Resolver for CipherReference URIs (osci.MIMEMessage.Resolve for "cid:"
// MIME parts) and returns the plaintext with the Type and MimeType
// attributes. Encrypt writes an EncryptedData for recipient certificates;
// EncryptElement, EncryptContent and DecryptDocument work on whole
// documents.
//
// # Algorithms
//
// Content: AES-128/192/256-GCM (XML Encryption 1.1; 12-byte IV before the
// ciphertext, 16-byte tag after it; OSCI's osci128:IvLength hint may say 12
// or 16) and AES-128/192/256-CBC (16-byte IV, W3C padding: the last byte is
// the pad length, the other pad bytes arbitrary). Encrypt defaults to
// AES-256-GCM; CBC is for tools without GCM.
//
// Key transport: RSA-OAEP as XML Encryption 1.1 rsa-oaep (ds:DigestMethod
// and xenc11:MGF, SHA-1 and MGF1-SHA-1 when absent) and as 1.0
// rsa-oaep-mgf1p (MGF1-SHA-1, digest SHA-1 unless named). Encrypt defaults
// to rsa-oaep with SHA-256 and MGF1-SHA-256, what OSCI 1.2 sends. Keys
// carried in ds:MgmtData (OSCI's attachment keys, inside an already
// encrypted content container) are read, and written on request.
//
// # Refused on purpose
//
// RSAES-PKCS1-v1_5 key transport (rsa-1_5) is refused with a reason: its
// decryption is a Bleichenbacher padding oracle, and the usual "random key
// on failure" counter-measure has been shown to leak through the content
// decryption that follows (Jager, Schinzel, Somorovsky: "Bleichenbacher's
// attack strikes again", ESORICS 2012). OSCI does not need it: OSCI 1.2 senders announce
// the OAEPEncryption feature and the Governikus library writes RSA-OAEP
// (SHA-256, MGF1-SHA-256), as the reference samples show. A sender still
// on PKCS#1 v1.5 gets an error naming the algorithm.
//
// Key wrap (kw-aes*), Triple-DES, pre-shared keys named by ds:KeyName,
// EncryptedKeys reached through RetrievalMethod and CipherReference
// transforms other than base64 are not implemented; each is refused with
// ErrUnsupportedAlgorithm or ErrNoKey naming what was found.
//
// # Oracles and errors
//
// Go's RSA-OAEP decryption reports a single error for every kind of bad
// padding, so trying each of our keys on each EncryptedKey reveals nothing
// beyond "not for this key"; that is reported as ErrNoKey (no key of ours
// is a recipient) or ErrWrongKey (the EncryptedKey names our certificate
// but does not decrypt with our private key). The symmetric layer reports
// one ErrDecryptionFailed for a GCM tag mismatch, bad CBC padding and, in
// DecryptDocument, CBC plaintext that does not fit the document, so none of
// them is a padding or well-formedness oracle. CBC has no integrity at all:
// set DecryptOptions.RefuseCBC where no legacy sender needs it, and never
// tell a partner more than "decryption failed" (the precise error is for
// the log).
//
// # OSCI notes
//
// The Governikus library writes a base64 transform into CipherReference
// but sends the MIME part binary (Content-Transfer-Encoding binary or
// "8-bit"); a referenced part that is not base64 text is therefore taken as
// it is. The OSCI content layer's EncryptedKey names its reader with a
// ds:RetrievalMethod to the certificate in NonIntermediaryCertificates; set
// DecryptOptions.Document so that it can be followed (otherwise every key is
// tried).
//
// # Limits
//
// A ciphertext is at most DecryptOptions.MaxCipherBytes (64 MiB by
// default), a KeyInfo holds at most 16 EncryptedKeys, an EncryptedKey's
// cipher at most 2,048 bytes (RSA-16384). Decrypt works on a tree xmlsafe
// parsed under its own limits.
package xmlenc
