package xmlschema

import "strings"

// Set is a schema set the node knows how to install: the file that
// identifies its directory, the schemas compiled together from there, and
// the root namespaces of the documents it validates.
type Set struct {
	// Name identifies the set, e.g. "xta2-v3" or "osci-1.2-StoreDelivery".
	Name string
	// Standard is the standard's name as operators know it.
	Standard string
	// Namespace and Version key the set: the standard's namespace and the
	// version of its schemas.
	Namespace, Version string
	// Marker is a file whose presence identifies the set's directory.
	Marker string
	// Schemas are the files (relative to the set's directory) compiled
	// into one schema: files of one namespace are included together,
	// several namespaces are imported side by side.
	Schemas []string
	// Documents are the root element namespaces of the documents the set
	// validates; ForNamespace finds the set by them. Sets whose documents
	// share a namespace with others (the OSCI envelopes) have none and are
	// chosen by name.
	Documents []string
	// Covers names the message types the set validates, for the listing.
	Covers string
}

// XTA2V3 is XTA 2 Version 3 (XTA-Webservice 2.1.1): the SOAP 1.2 envelope,
// WS-Addressing, OSCI message metadata and MsgBox types and the XTA
// elements, so a whole XTA envelope validates in one go.
var XTA2V3 = Set{
	Name: "xta2-v3", Standard: "XTA 2 Version 3", Namespace: "http://xoev.de/transport/xta/211", Version: "2.1.1",
	Marker: "XTA-Webservice-Globale-Elemente.xsd",
	// The XTA namespace is spread over two files; ".xsd" is the SOAP 1.2
	// envelope schema, under the name the XTA schemas import it by.
	Schemas:   []string{"XTA-Webservice-Globale-Elemente.xsd", "XTA-Webservice-Exceptions.xsd", "OSCI2_02.xsd", ".xsd"},
	Documents: []string{"http://xoev.de/transport/xta/211"},
	Covers:    "XTA 2 V3 SOAP envelopes (all operations, responses and faults)",
}

// XNachweis120 is XNachweis 1.2.0: the NOOTS messages (DE.Evidence…) and
// the EU EDM messages.
var XNachweis120 = Set{
	Name: "xnachweis-1.2.0", Standard: "XNachweis 1.2.0", Namespace: "urn:xoev-de:bva:standard:xnachweis", Version: "1.2.0",
	Marker:  "xnachweis-de-noots.xsd",
	Schemas: []string{"xnachweis-de-noots.xsd", "xnachweis-eu-edm.xsd"},
	Documents: []string{
		"urn:xoev-de:bva:standard:xnachweis:schema:xnachweis-de-noots",
		"urn:xoev-de:bva:standard:xnachweis:schema:xnachweis-eu-edm",
	},
	Covers: "DE.EvidenceRequest.0101, DE.EvidenceResponse.0102, DE.EvidenceErrorResponse.0103 and the EU EDM messages",
}

// XPersonenstand175 is XPersonenstand 1.7.5, the messages of the
// Standesämter to the Meldebehörden.
var XPersonenstand175 = Set{
	Name: "xpersonenstand-1.7.5", Standard: "XPersonenstand 1.7.5", Namespace: "http://xpsw.domap.de/xpsw175", Version: "1.7.5",
	Marker:    "xpersonenstand-nachrichten-meldebehoerden.xsd",
	Schemas:   []string{"xpersonenstand-nachrichten-meldebehoerden.xsd"},
	Documents: []string{"http://xpsw.domap.de/xpsw175"},
	Covers:    "stA2MB.Geburt, .Ehe, .LP and .Sterbefall (Standesamt → Meldebehörde)",
}

// XMeld243 is the XMeld 2.4.3 subset: Rückmeldung, Anmeldung and
// Fortschreibung.
var XMeld243 = Set{
	Name: "xmeld-2.4.3", Standard: "XMeld 2.4.3", Namespace: "http://www.osci.de/xmeld243", Version: "2.4.3",
	Marker:    "xmeld-nachrichten-rueckmeldung.xsd",
	Schemas:   []string{"xmeld-nachrichten-rueckmeldung.xsd", "xmeld-nachrichten-anmeldung.xsd", "xmeld-nachrichten-fortschreibung.xsd"},
	Documents: []string{"http://www.osci.de/xmeld243"},
	Covers:    "XMeld Rückmeldung 0201–0224, Anmeldung 0300/0301, Fortschreibung 0001–0198",
}

// XGewerbeanzeige22 is XGewerbeanzeige 2.2. Its schemas are published on
// XRepository only; the node finds them once an operator installs them.
var XGewerbeanzeige22 = Set{
	Name: "xgewerbeanzeige-2.2", Standard: "XGewerbeanzeige 2.2", Namespace: "http://www.xgewerbeanzeige.de/spezifikation/2.2", Version: "2.2",
	Marker:    "xgewerbeanzeige-nachrichten.xsd",
	Schemas:   []string{"xgewerbeanzeige-nachrichten.xsd"},
	Documents: []string{"http://www.xgewerbeanzeige.de/spezifikation/2.2"},
	Covers:    "Gewerbemeldungen (Anmeldung, Ummeldung, Abmeldung) 2.2",
}

// osciOrderTypes are the OSCI 1.2 envelopes, one schema per order type and
// response (soapX.xsd in the OSCI schema set).
var osciOrderTypes = []string{
	"InitDialog", "ExitDialog", "GetMessageId", "StoreDelivery", "FetchDelivery", "FetchProcessCard",
	"ForwardDelivery", "AcceptDelivery", "MediateDelivery", "ProcessDelivery", "PartialStoreDelivery", "PartialFetchDelivery",
	"ResponseToInitDialog", "ResponseToExitDialog", "ResponseToGetMessageId", "ResponseToStoreDelivery", "ResponseToFetchDelivery",
	"ResponseToFetchProcessCard", "ResponseToForwardDelivery", "ResponseToAcceptDelivery", "ResponseToMediateDelivery",
	"ResponseToProcessDelivery", "ResponseToPartialStoreDelivery", "ResponseToPartialFetchDelivery",
	"MessageEncrypted", "MessageFault",
}

// OSCI12 returns the name of the OSCI 1.2 set for an order type or
// response, e.g. OSCI12("StoreDelivery") or OSCI12("MessageEncrypted").
// OSCI envelopes all share the SOAP 1.1 namespace, so the OSCI code picks
// the set by name.
func OSCI12(orderType string) string { return "osci-1.2-" + orderType }

func osciSets() []Set {
	var sets []Set
	for _, t := range osciOrderTypes {
		covers := "OSCI 1.2 " + t + " (SOAP 1.1 envelope)"
		switch t {
		case "MessageEncrypted":
			covers = "OSCI 1.2 transport-encrypted envelope (SOAP 1.1)"
		case "MessageFault":
			covers = "OSCI 1.2 SOAP fault"
		}
		if strings.HasPrefix(t, "ResponseTo") {
			covers = "OSCI 1.2 response to " + strings.TrimPrefix(t, "ResponseTo") + " (SOAP 1.1 envelope)"
		}
		sets = append(sets, Set{
			Name: OSCI12(t), Standard: "OSCI-Transport 1.2", Namespace: "http://www.osci.de/2002/04/osci", Version: "1.2",
			Marker: "soap" + t + ".xsd", Schemas: []string{"soap" + t + ".xsd"}, Covers: covers,
		})
	}
	return sets
}

// Known is every schema set this build knows how to install.
var Known = append([]Set{XTA2V3, XNachweis120, XPersonenstand175, XMeld243, XGewerbeanzeige22}, osciSets()...)
