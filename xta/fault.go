package xta

import (
	"fmt"
	"strings"
)

// Namespaces of XTA 2 Version 3 messages.
const (
	NSSOAP     = "http://www.w3.org/2003/05/soap-envelope"
	NSSOAP11   = "http://schemas.xmlsoap.org/soap/envelope/"
	NSWSA      = "http://www.w3.org/2005/08/addressing"
	NSXTA      = "http://xoev.de/transport/xta/211"
	NSOSCIMeta = "http://www.osci.eu/ws/2014/10/transport"
	NSOSCI     = "http://www.osci.eu/ws/2008/05/transport"
	NSXOP      = "http://www.w3.org/2004/08/xop/include"
	// NSParzelle qualifies the SOAP fault subcodes Parzelle adds where SOAP
	// and XTA name no precise fault (malformed XML, a DTD, a limit).
	NSParzelle = "urn:parzelle:xta:fault"
)

// prefixes are the prefixes Parzelle writes.
var prefixes = map[string]string{
	NSSOAP: "s12", NSWSA: "wsa", NSXTA: "xta", NSOSCIMeta: "oscimeta", NSOSCI: "osci", NSXOP: "xop", NSParzelle: "pz",
}

// Code is one entry of the XTA error code list (Codelist.Fehlernummer in
// XTA-Webservice-Datentypen.xsd) with the exception element that carries it.
type Code struct {
	Number    string
	Exception string // local name of the xta exception element
	Name      string // the code list's text
}

// The code list, as the schema defines it.
var (
	CodeUnspecified        = Code{"9000", "XTAWSTechnicalProblemException", "Unspezifizierter Fehler, als Freitext beschrieben"}
	CodeCertificateExpired = Code{"9010", "PermissionDeniedException", "Authentisierung/Zertifikat ist abgelaufen."}
	CodeAccountLocked      = Code{"9011", "PermissionDeniedException", "Account ist gesperrt."}
	CodeNoAccount          = Code{"9012", "PermissionDeniedException", "Account nicht vorhanden."}
	CodeServiceNotBooked   = Code{"9013", "PermissionDeniedException", "Dienst ist nicht gebucht."}
	CodeWrongCertificate   = Code{"9014", "PermissionDeniedException", "Authentisierung/Zertifikat passt nicht zur Absenderkennung."}
	CodeNoParameter        = Code{"9020", "ParameterIsNotValidException", "Keine Parameter vorhanden"}
	CodeInvalidURI         = Code{"9021", "ParameterIsNotValidException", "Keine gültige URI"}
	CodeBadParameters      = Code{"9022", "ParameterIsNotValidException", "Ungültige Parameterkombination"}
	CodeTooLarge           = Code{"9023", "ParameterIsNotValidException", "Die Nachricht überschreitet die Größenbeschränkung."}
	CodeMessageIDUsed      = Code{"9024", "ParameterIsNotValidException", "MessageID ist bereits vergeben."}
	CodeInternal           = Code{"9030", "XTAWSTechnicalProblemException", "Interner Fehler beim XTA-Server bzw. XTA-Dienstleister"}
	CodeDirectory          = Code{"9031", "XTAWSTechnicalProblemException", "Fehler beim externen Verzeichnisdienst"}
	CodeDelivery           = Code{"9032", "XTAWSTechnicalProblemException", "Fehler bei der Zustellung"}
	CodeSchemaViolation    = Code{"9050", "MessageSchemaViolationException", "Fachnachricht ist nicht schemakonform"}
	CodeWrongEncoding      = Code{"9051", "MessageSchemaViolationException", "Fachnachricht trägt ein falsches Encoding."}
	CodeServiceProfile     = Code{"9052", "MessageSchemaViolationException", "Nachricht verletzt das entsprechende Service Profil."}
	CodeVirus              = Code{"9060", "MessageVirusDetectionException", "Es wurde schadhafter Code ermittelt."}
	CodeUnknownMessageID   = Code{"9070", "InvalidMessageIDException", "MessageID für den Account nicht bekannt."}
	CodeOnlyAsync          = Code{"9080", "SyncAsyncException", "Der Dienst wird nur asynchron angeboten."}
	CodeOnlySync           = Code{"9081", "SyncAsyncException", "Der Dienst wird nur synchron angeboten."}
	CodeNotBeforePassed    = Code{"9100", "CancelDeniedException", "Der durch den Schalter NotBefore gesetzte Termin ist verstrichen."}
	CodeNotBeforeNotSet    = Code{"9101", "CancelDeniedException", "Der Schalter NotBefore wurde nicht gesetzt."}
)

// Codes lists the whole code list, for clients that map a number back.
var Codes = []Code{
	CodeUnspecified, CodeCertificateExpired, CodeAccountLocked, CodeNoAccount, CodeServiceNotBooked, CodeWrongCertificate,
	CodeNoParameter, CodeInvalidURI, CodeBadParameters, CodeTooLarge, CodeMessageIDUsed,
	CodeInternal, CodeDirectory, CodeDelivery, CodeSchemaViolation, CodeWrongEncoding, CodeServiceProfile,
	CodeVirus, CodeUnknownMessageID, CodeOnlyAsync, CodeOnlySync, CodeNotBeforePassed, CodeNotBeforeNotSet,
}

// Fault is a SOAP 1.2 fault. XTA faults carry an XTA exception in the
// Detail; the few that precede any XTA semantics (wrong envelope version,
// WS-Addressing errors, malformed XML) carry the SOAP or WS-Addressing
// subcode that names them.
type Fault struct {
	// SOAPCode is Sender, Receiver, VersionMismatch or MustUnderstand.
	SOAPCode string
	// Subcode, when set, is a qualified subcode value.
	Subcode struct{ Space, Local string }
	// Code is the XTA code; zero for faults without an XTA exception.
	Code Code
	// Reason is the human-readable text: the code's name and, after a
	// colon, what exactly was wrong.
	Reason string
	// ProblemHeader names the missing WS-Addressing header, ProblemAction
	// the unsupported Action (WS-Addressing fault details).
	ProblemHeader, ProblemAction string
}

func (f *Fault) Error() string {
	if f.Code.Number != "" {
		return fmt.Sprintf("xta fault %s (%s): %s", f.Code.Number, f.Code.Exception, f.Reason)
	}
	return fmt.Sprintf("soap fault %s %s: %s", f.SOAPCode, f.Subcode.Local, f.Reason)
}

// xtaFault returns the fault for an XTA code; detail says what exactly was
// wrong.
func xtaFault(c Code, detail string, args ...any) *Fault {
	reason := c.Name
	if detail != "" {
		reason = strings.TrimSuffix(c.Name, ".") + ": " + fmt.Sprintf(detail, args...)
	}
	soap := "Sender"
	if c.Exception == "XTAWSTechnicalProblemException" {
		soap = "Receiver"
	}
	return &Fault{SOAPCode: soap, Code: c, Reason: reason}
}

// protocolFault returns a fault that precedes XTA semantics, with a
// qualified subcode.
func protocolFault(soapCode, subSpace, subLocal, reason string, args ...any) *Fault {
	f := &Fault{SOAPCode: soapCode, Reason: fmt.Sprintf(reason, args...)}
	f.Subcode.Space, f.Subcode.Local = subSpace, subLocal
	return f
}
