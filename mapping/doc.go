// Package mapping is the declarative mapping engine: it turns XÖV process
// messages (XMeld, XGewerbeanzeige, …) into register facts
// ([]register.Fact), as the tenant's mapping specs say.
//
// A spec is a YAML file, one per message family and register, versioned;
// every fact it makes carries "id@version" as its Source:
//
//	id: xmeld-sperren                  # [a-z0-9][a-z0-9.-]*
//	version: 2                         # raise it whenever the spec changes
//	register: melderegister            # the tenant's register ...
//	type: person                       # ... and its type (person, business)
//	namespaces:                        # prefixes for the XPath expressions
//	  - {prefix: x, uri: "http://www.osci.de/xmeld243"}
//	variants:                          # the message types it maps (or match: one)
//	  - {name: "0093", namespace: "http://www.osci.de/xmeld243", root: fortschreibung.auskunftssperre.0093}
//	  - {name: "0094", namespace: "...", root: ..., namespaces: [...]}  # prefixes bound differently here
//	codelists:                         # code tables rules map codes through
//	  - {name: auskunftssperre, codes: [{code: "3", value: gefahr}]}
//	messageId: "nachrichtenkopf/identifikation.nachricht/nachrichtenUUID"
//	subjects:                          # fan-out rules, each giving one fact per node
//	  - each: "x:identifikation.betroffenePerson"   # default: the root
//	    variants: ["0093"]              # only in these variants (rules too)
//	    when: "..."                     # optional condition
//	    identify:                       # who the person is (register.Identity) ...
//	      idnr: {select: "x:steueridentifikation/x:idnummer"}
//	      familienname: {select: "x:name/x:familienname"}
//	      vornamen: {select: "x:name/x:vornamen"}
//	      geburtsdatum: {select: "x:geburt/x:geburtsdatum"}
//	      geburtsort: {select: "x:geburt/x:geburtsort"}
//	      anschrift: {select: "...", postleitzahl: {select: postleitzahl}, strasse: ..., hausnummer: ...}
//	      known: only                   # only | required (default: a new person otherwise)
//	      require: "XPath"              # makes known: required where it holds
//	    key: {select: "concat('betrieb/', ...)"}  # ... or a subject key (text)
//	    event: "x:identifikation.ereignis/ereignis.zeichen"
//	    date: {select: "x:identifikation.ereignis/ereignis.zeitpunkt", convert: date}
//	    set:                            # attribute assignments
//	      - attribute: familienname
//	        select: "x:name/x:familienname"
//	        convert: name
//	        from: always                # always | event (default) | an XPath to a date
//	        required: true              # a message without it is an error
//	        op: default                 # only where the record has no value
//	      - attribute: hauptwohnung     # an object: select picks its node,
//	        select: "x:wohnung[x:statusderwohnung/code = '1']"
//	        fields:                     # fields are relative to it
//	          - {field: strasse, select: "x:anschrift/x:anschrift.inland/x:anschrift.inland/strasse"}
//	          - {field: seit, select: "x:datumDesBeziehens", convert: date}
//	      - attribute: auskunftssperren # a list: one value (or object) per node
//	        each: "x:auskunftssperre"
//	        empty: clear                # the message states the whole list: none lifts them
//	        fields:
//	          - {field: art, select: "x:grund", convert: code, codelist: auskunftssperre}
//	      - {attribute: staatsangehoerigkeit, op: add, value: "000"}  # add (or remove) one item
//	    clear: [ende]                   # attributes the event ends from its date
//	    retracts:                       # events this one withdraws (storno, correction)
//	      - {when: "x:istKorrektur/code = '1'", select: "x:uuid"}
//	    delete: true                    # the event ends the record
//
// A subject with identify: is found by the register's rules of who a person
// is (IDNr, else Basisdaten narrowed by birthplace and address, merging
// records a message proves to be one; see fixtures/mappings/README.md); one
// with key: is found by its subject key.
//
// All XPath is XPath 1.0 (github.com/antchfx/xpath over the xmlsafe tree),
// namespace-aware: a prefixed name test matches by namespace URI, an
// unprefixed one only elements in no namespace. Plain child paths
// ("x:a/x:b/c", "..") are walked directly, which is most of a spec's work.
// Expressions are relative to the subject's node (fields: to the object's
// node; each: to each node). Keep a predicate inside a function's
// arguments last: antchfx/xpath evaluates the arguments after it from the
// wrong node (Lint warns).
//
// Conversions (convert): text (the default: white space collapsed, NFC,
// only characters of DIN 91379), name (XMeld structured names —
// namensbestandteil and nachname —, XInneres AllgemeinerName, or
// unstructured text), date (xs:date with or without a time zone, the day
// of an xs:dateTime as written, XInneres TagesdatumMitUnbekannt), partialDate
// (XInneres teilbekanntesDatum: jahr, jahrMonat or jahrMonatTag, kept as
// transmitted), ddmmyyyy (XGewerbeanzeige birth dates, 00 for unknown
// parts), bool (XPath boolean, xs:boolean, or a yes/no code 1/0), code (an
// XÖV code element: its code child, checked against listURI when the rule
// names one and mapped through codes: [{code, value}] when given), idnr
// (an Identifikationsnummer with a valid check digit).
//
// Event ids: a fact's EventID is the event reference (event:, else the
// message id with the rule's and node's positions) followed by "/" and the
// subject key; retracts: references are completed the same way. An event
// reference that is stable across messages (the Meldebehörde's
// ereignis.zeichen, the satz uuid) lets a later message retract it. The
// register keeps the facts and derives the record from them in the order
// of their own dates, so ordering, duplicates and corrections are its
// business; mapping is deterministic.
//
// Compile a spec with Compile, map with Spec.Map; a Set holds specs by
// message type (root element), and ForTenant compiles (and caches, per
// configuration version) the specs a tenant file names under `mappings:`,
// ForInbox those of one inbox (its own `mappings:`, else the tenant's).
// Lint checks a spec against the message schemas. `parzelle mapping test`
// and `parzelle mapping lint` are the command-line faces of Map and Lint.
package mapping
