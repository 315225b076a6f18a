package osci

import "fmt"

// Code is an OSCI-Transport 1.2 feedback code. Codes of the message level
// (9000–9503) answer a request the intermediary could not read as a
// message and go back as SOAP faults; codes of the order level go back in
// the response's Feedback: 0xxx done, 3xxx warnings, 9xxx errors.
type Code string

// The feedback codes of OSCI-Transport 1.2.
const (
	// Message level (SOAP faults).
	CodeInternal             Code = "9000"
	CodeNoOSCIMessage        Code = "9100"
	CodeNoDecryptionKey      Code = "9200"
	CodeTransportCertRevoked Code = "9201"
	CodeUndecryptable        Code = "9202"
	CodeNoValidRequest       Code = "9300"
	CodeWrongDialog          Code = "9400"
	CodeNoClientCipherCert   Code = "9500"
	CodeClientCipherCertBad  Code = "9501"
	CodeClientCipherRevoked  Code = "9502"
	CodeClientCipherCheck    Code = "9503"

	// Order level: certificates.
	CodeClientCipherExpired    Code = "3500"
	CodeClientCipherIncomplete Code = "3501"
	CodeUnsigned               Code = "9600"
	CodeSignatureInvalid       Code = "9601"
	CodeNotAllSigned           Code = "9602"
	CodeSignatureCheck         Code = "9603"
	CodeClientSignerExpired    Code = "3700"
	CodeClientSignerBad        Code = "9700"
	CodeClientSignerRevoked    Code = "9701"
	CodeAuthorSignerExpired    Code = "3701"
	CodeAuthorSignerBad        Code = "3702"
	CodeAuthorSignerRevoked    Code = "3703"
	CodeAuthorCipherExpired    Code = "3704"
	CodeRecipientCipherExpired Code = "3705"
	CodeReaderCipherExpired    Code = "3706"
	CodeCertCheckIncomplete    Code = "3707"
	CodeRecipientSignerExpired Code = "3708"
	CodeAuthorCipherBad        Code = "9704"
	CodeAuthorCipherRevoked    Code = "9705"
	CodeRecipientCipherBad     Code = "9706"
	CodeRecipientCipherRevoked Code = "9707"
	CodeReaderCipherBad        Code = "9708"
	CodeReaderCipherRevoked    Code = "9709"
	CodeCertCheckInternal      Code = "9710"
	CodeRecipientSignerBad     Code = "9711"
	CodeRecipientSignerRevoked Code = "9712"

	// Order level: orders.
	CodeNoMessageID            Code = "9800"
	CodeIllegalMessageID       Code = "9801"
	CodeMoreDeliveries         Code = "3800"
	CodeMoreProcessCards       Code = "3801"
	CodeExplicitDialogRequired Code = "9802"
	CodeNoDelivery             Code = "9803"
	CodeNoProcessCard          Code = "9804"
	CodeNotAccepted            Code = "9805"
	CodeAcceptedWithoutReply   Code = "9806"
	CodeRecipientSigInvalid    Code = "9807"
	CodeRecipientSigMissing    Code = "3802"
	CodeRecipientUnencrypted   Code = "3803"
	CodeRecipientInternal      Code = "9808"
	CodeForwardNotReached      Code = "9809"
	CodeForwardReached         Code = "9810"
	CodeOrderInternal          Code = "9811"

	// Order level: partial messages.
	CodeChunkExists      Code = "9900"
	CodeChunkNumber      Code = "9901"
	CodeChunkTooLarge    Code = "9902"
	CodeChunkTooSmall    Code = "9903"
	CodeMessageTooLarge  Code = "9904"
	CodeChunkInformation Code = "9905"

	// Order level: done.
	CodeDoneDialogClosed Code = "0800"
	CodeDoneDialogOpen   Code = "0801"
)

// codeTexts are the codes' texts, German and English, in Parzelle's words.
var codeTexts = map[Code][2]string{
	CodeInternal:             {"Interner Fehler beim Intermediär", "internal error at the intermediary"},
	CodeNoOSCIMessage:        {"Die Nachricht ist keine gültige OSCI-Nachricht", "the message is not a valid OSCI message"},
	CodeNoDecryptionKey:      {"Die Nachricht ist nicht an ein Verschlüsselungszertifikat dieses Intermediärs verschlüsselt", "the message is not encrypted to a cipher certificate of this intermediary"},
	CodeTransportCertRevoked: {"Das Verschlüsselungszertifikat der Nachrichtenebene ist gesperrt", "the cipher certificate of the message level is revoked"},
	CodeUndecryptable:        {"Die Auftragsdaten lassen sich nicht entschlüsseln", "the request data cannot be decrypted"},
	CodeNoValidRequest:       {"Die Auftragsdaten sind kein gültiger Auftrag", "the request data are not a valid request"},
	CodeWrongDialog:          {"ConversationId, SequenceNumber oder Response passen nicht zum Dialog", "ConversationId, SequenceNumber or Response do not fit the dialog"},
	CodeNoClientCipherCert:   {"Das Verschlüsselungszertifikat des Clients fehlt in den Auftragsdaten", "the client's cipher certificate is missing from the request"},
	CodeClientCipherCertBad:  {"Die Signatur über das Verschlüsselungszertifikat des Clients ist ungültig", "the signature over the client's cipher certificate is invalid"},
	CodeClientCipherRevoked:  {"Das Verschlüsselungszertifikat des Clients ist gesperrt", "the client's cipher certificate is revoked"},
	CodeClientCipherCheck:    {"Interner Fehler bei der Prüfung des Verschlüsselungszertifikats des Clients", "internal error checking the client's cipher certificate"},

	CodeClientCipherExpired:    {"Das Verschlüsselungszertifikat des Clients ist zeitlich ungültig", "the client's cipher certificate is outside its validity period"},
	CodeClientCipherIncomplete: {"Das Verschlüsselungszertifikat des Clients ließ sich nicht vollständig prüfen", "the client's cipher certificate could not be checked completely"},
	CodeUnsigned:               {"Der Auftrag ist nicht signiert, dieser Auftragstyp verlangt eine Signatur", "the request is not signed, and this order type requires a signature"},
	CodeSignatureInvalid:       {"Die Signatur des Auftrags ist ungültig", "the signature of the request is invalid"},
	CodeNotAllSigned:           {"Nicht alle zu signierenden Teile des Auftrags sind signiert", "not every part of the request that must be signed is signed"},
	CodeSignatureCheck:         {"Interner Fehler bei der Signaturprüfung", "internal error checking the signature"},
	CodeClientSignerExpired:    {"Das Signaturzertifikat des Clients ist zeitlich ungültig", "the client's signature certificate is outside its validity period"},
	CodeClientSignerBad:        {"Die Signatur über das Signaturzertifikat des Clients ist ungültig", "the signature over the client's signature certificate is invalid"},
	CodeClientSignerRevoked:    {"Das Signaturzertifikat des Clients ist gesperrt", "the client's signature certificate is revoked"},
	CodeAuthorSignerExpired:    {"Ein Signaturzertifikat eines Autors ist zeitlich ungültig", "a signature certificate of an author is outside its validity period"},
	CodeAuthorSignerBad:        {"Die Signatur über ein Signaturzertifikat eines Autors ist ungültig", "the signature over an author's signature certificate is invalid"},
	CodeAuthorSignerRevoked:    {"Ein Signaturzertifikat eines Autors ist gesperrt", "an author's signature certificate is revoked"},
	CodeAuthorCipherExpired:    {"Ein Verschlüsselungszertifikat eines Autors ist zeitlich ungültig", "an author's cipher certificate is outside its validity period"},
	CodeRecipientCipherExpired: {"Das Verschlüsselungszertifikat des Empfängers ist zeitlich ungültig", "the recipient's cipher certificate is outside its validity period"},
	CodeReaderCipherExpired:    {"Ein Verschlüsselungszertifikat eines Lesers ist zeitlich ungültig", "a reader's cipher certificate is outside its validity period"},
	CodeCertCheckIncomplete:    {"Die Zertifikatsprüfung ließ sich nicht vollständig durchführen", "the certificate check could not be completed"},
	CodeRecipientSignerExpired: {"Das Signaturzertifikat des Empfängers ist zeitlich ungültig", "the recipient's signature certificate is outside its validity period"},
	CodeAuthorCipherBad:        {"Die Signatur über ein Verschlüsselungszertifikat eines Autors ist ungültig", "the signature over an author's cipher certificate is invalid"},
	CodeAuthorCipherRevoked:    {"Ein Verschlüsselungszertifikat eines Autors ist gesperrt", "an author's cipher certificate is revoked"},
	CodeRecipientCipherBad:     {"Die Signatur über das Verschlüsselungszertifikat des Empfängers ist ungültig", "the signature over the recipient's cipher certificate is invalid"},
	CodeRecipientCipherRevoked: {"Das Verschlüsselungszertifikat des Empfängers ist gesperrt", "the recipient's cipher certificate is revoked"},
	CodeReaderCipherBad:        {"Die Signatur über ein Verschlüsselungszertifikat eines Lesers ist ungültig", "the signature over a reader's cipher certificate is invalid"},
	CodeReaderCipherRevoked:    {"Ein Verschlüsselungszertifikat eines Lesers ist gesperrt", "a reader's cipher certificate is revoked"},
	CodeCertCheckInternal:      {"Interner Fehler bei der Zertifikatsprüfung", "internal error checking certificates"},
	CodeRecipientSignerBad:     {"Die Signatur über das Signaturzertifikat des Empfängers ist ungültig", "the signature over the recipient's signature certificate is invalid"},
	CodeRecipientSignerRevoked: {"Das Signaturzertifikat des Empfängers ist gesperrt", "the recipient's signature certificate is revoked"},

	CodeNoMessageID:            {"Zustellung ohne MessageId abgelehnt", "a delivery without MessageId is refused"},
	CodeIllegalMessageID:       {"Unzulässige MessageId: nicht von diesem Intermediär vergeben oder schon verwendet", "illegal MessageId: not issued by this intermediary, or used already"},
	CodeMoreDeliveries:         {"Für diesen Client liegen weitere Zustellungen vor", "further deliveries wait for this client"},
	CodeMoreProcessCards:       {"Weitere Laufzettel erfüllen die Auswahlkriterien", "further process cards meet the selection"},
	CodeExplicitDialogRequired: {"Dieser Auftragstyp verlangt einen expliziten Dialog", "this order type requires an explicit dialog"},
	CodeNoDelivery:             {"Keine Zustellung erfüllt die Auswahlkriterien", "no delivery meets the selection"},
	CodeNoProcessCard:          {"Kein Laufzettel erfüllt die Auswahlkriterien", "no process card meets the selection"},
	CodeNotAccepted:            {"Der Empfänger hat die Zustellung nicht angenommen", "the recipient did not accept the delivery"},
	CodeAcceptedWithoutReply:   {"Der Empfänger hat die Zustellung angenommen, seine Antwort enthält aber keine Zustellung an den Absender", "the recipient accepted the delivery, but its answer holds no delivery to the sender"},
	CodeRecipientSigInvalid:    {"Die Signatur des Empfängers über die Annahme- oder Bearbeitungsantwort ist ungültig", "the recipient's signature over its acceptance or processing answer is invalid"},
	CodeRecipientSigMissing:    {"Die Signatur des Empfängers über die Annahme- oder Bearbeitungsantwort fehlt", "the recipient's signature over its acceptance or processing answer is missing"},
	CodeRecipientUnencrypted:   {"Der Empfänger hat unverschlüsselt geantwortet", "the recipient answered unencrypted"},
	CodeRecipientInternal:      {"Interner Fehler beim Empfänger", "internal error at the recipient"},
	CodeForwardNotReached:      {"Interner Fehler beim Weiterleiten: die Zustellung hat den Empfänger nicht erreicht", "internal error forwarding: the delivery did not reach the recipient"},
	CodeForwardReached:         {"Interner Fehler beim Weiterleiten: die Zustellung hat den Empfänger erreicht", "internal error forwarding: the delivery reached the recipient"},
	CodeOrderInternal:          {"Interner Fehler bei der Ausführung des Auftrags", "internal error executing the request"},

	CodeChunkExists:      {"Das Teilstück ist schon vorhanden", "the chunk exists already"},
	CodeChunkNumber:      {"Falsche Nummer des Teilstücks", "wrong chunk number"},
	CodeChunkTooLarge:    {"Das Teilstück ist größer als erlaubt", "the chunk is larger than allowed"},
	CodeChunkTooSmall:    {"Das Teilstück ist kleiner als erlaubt", "the chunk is smaller than allowed"},
	CodeMessageTooLarge:  {"Die Nachricht ist größer als erlaubt", "the message is larger than allowed"},
	CodeChunkInformation: {"Falsche Angaben zum Teilstück", "wrong chunk information"},

	CodeDoneDialogClosed: {"Auftrag ausgeführt, Dialog beendet", "request executed, dialog closed"},
	CodeDoneDialogOpen:   {"Auftrag ausgeführt, Dialog weiterhin geöffnet", "request executed, dialog still open"},
}

// Text returns the code's text in German ("de", the default) or English
// ("en").
func (c Code) Text(lang string) string {
	t, ok := codeTexts[c]
	if !ok {
		return string(c)
	}
	if lang == "en" {
		return t[1]
	}
	return t[0]
}

// Fault reports whether the code answers a request that is not a readable
// message, as a SOAP fault rather than a Feedback entry.
func (c Code) Fault() bool { return c >= "9000" && c <= "9503" }

// Warning reports whether the code is a warning (3xxx): the order was
// carried out all the same.
func (c Code) Warning() bool { return c[0] == '3' }

// Error is a refused request: the feedback code and what was wrong, in
// words an operator of the client understands.
type Error struct {
	Code   Code
	Detail string
	Err    error
}

func (e *Error) Error() string {
	msg := "osci: " + string(e.Code) + " " + e.Code.Text("en")
	if e.Detail != "" {
		msg += ": " + e.Detail
	}
	return msg
}

func (e *Error) Unwrap() error { return e.Err }

// refuse returns an *Error with the code and a formatted detail; a last
// argument that is an error is kept for errors.Is.
func refuse(code Code, format string, args ...any) *Error {
	e := &Error{Code: code, Detail: fmt.Sprintf(format, args...)}
	if len(args) > 0 {
		if err, ok := args[len(args)-1].(error); ok {
			e.Err = err
		}
	}
	return e
}
