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
	// MessageID is the transport message the fact came from.
	MessageID string `json:"messageId"`
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
}

// Assignment sets one attribute from a day on: Value nil clears it; From
// empty means from the record's beginning (attributes such as names and
// the birth date that are not tied to the event's day).
type Assignment struct {
	Attribute string `json:"attribute"`
	Value     any    `json:"value"`
	From      string `json:"from,omitempty"`
}
