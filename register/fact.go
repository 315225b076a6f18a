package register

// Fact is what one event of a process message says about one subject, as
// the mapping engine derives it: the attributes it sets or clears from
// which day on, and the earlier events it withdraws. The register keeps a
// subject's facts and derives the record from all of them in the order of
// their own dates, not of their arrival, so that facts applied in any order,
// or twice, give the same record.
type Fact struct {
	// SubjectKey names the subject in the register (e.g. "idnr:…").
	SubjectKey string `json:"subjectKey"`
	// EventID is unique per event and subject across all messages (e.g. the
	// message id, the event's position and the subject's); a fact whose
	// EventID the register holds already is not applied again.
	EventID string `json:"eventId"`
	// MessageID is the message the fact came from, as the message names
	// itself (an XÖV nachrichtenUUID) or its transport.
	MessageID string `json:"messageId"`
	// Transport is the transport's message id (XTA, OSCI) of the message,
	// when it came through one: the console's message trace finds the
	// records a message changed by it. Stored beside the fact, not in it.
	Transport string `json:"-"`
	// Date is the event's own day (YYYY-MM-DD), which orders facts.
	Date string `json:"date"`
	// Source names the mapping spec and its version (id@version) that made
	// the fact.
	Source string `json:"source"`
	// Set are the attribute values the event states.
	Set []Assignment `json:"set,omitempty"`
	// Retracts lists event ids whose facts this one withdraws: a storno,
	// or the event a correction replaces.
	Retracts []string `json:"retracts,omitempty"`
	// Delete ends the record when the fact is the subject's latest.
	Delete bool `json:"delete,omitempty"`
	// Identify, when set, says who the subject is (person registers): the
	// register finds the subject's record by it rather than by SubjectKey,
	// which then only names the subject within the message (see Identity).
	Identify *Identity `json:"identify,omitempty"`
	// Ref is the event's reference without the subject, and Withdraws the
	// references of the events this one withdraws: within one record they
	// match whatever the messages called the person (a later message may
	// name them by a new name).
	Ref       string   `json:"ref,omitempty"`
	Withdraws []string `json:"withdraws,omitempty"`
}

// Identity is how a message identifies the person a fact is about. The
// register resolves it to a record (resolve.go): by IDNr or Ordnungsmerkmal
// where the message has one and a record carries it, else by the
// Basisdaten, never by a guess.
type Identity struct {
	// IDNr and Ordnungsmerkmal identify a person on their own.
	IDNr            string `json:"idnr,omitempty"`
	Ordnungsmerkmal string `json:"ordnungsmerkmal,omitempty"`
	// The Basisdaten: family name, given names and birth date (all three,
	// or none), and, when the message states it, the birth place.
	Familienname string `json:"familienname,omitempty"`
	Vornamen     string `json:"vornamen,omitempty"`
	Geburtsdatum string `json:"geburtsdatum,omitempty"`
	Geburtsort   string `json:"geburtsort,omitempty"`
	// Anschrift is an address the person lives or lived at, which tells
	// namesakes apart.
	Anschrift *IdentityAddress `json:"anschrift,omitempty"`
	// Known says what happens when no record is the person: "" makes a new
	// record; KnownOnly leaves the fact out (a message that names others
	// besides the person it concerns: a spouse or parent registered
	// elsewhere); KnownRequired refuses it as not found (the register tries
	// again later: the message may have overtaken the one that registers
	// the person).
	Known string `json:"known,omitempty"`
}

// Values of Identity.Known.
const (
	KnownOnly     = "only"
	KnownRequired = "required"
)

// IdentityAddress is an address as identification compares it.
type IdentityAddress struct {
	Postleitzahl string `json:"postleitzahl,omitempty"`
	Strasse      string `json:"strasse,omitempty"`
	Hausnummer   string `json:"hausnummer,omitempty"`
}

// Assignment sets one attribute from a day on: Value nil clears it; From
// empty means from the record's beginning (attributes such as names and
// the birth date that are not tied to the event's day). With Op add or
// remove, Value is one item (an object or text) added to or removed from a
// list attribute, so that events about one item each (a child's birth, a
// new document) do not restate the whole list; with Op default it applies
// only where the attribute has no value.
type Assignment struct {
	Attribute string `json:"attribute"`
	Value     any    `json:"value"`
	From      string `json:"from,omitempty"`
	Op        string `json:"op,omitempty"`
}

// Operations of an Assignment: set the attribute; add an item to or
// remove items from a list attribute; or set it by default, only where the
// record has no value for it then (what a message restates to identify a
// person fills gaps, but never undoes a change another message made).
const (
	OpSet     = ""
	OpAdd     = "add"
	OpRemove  = "remove"
	OpDefault = "default"
)
