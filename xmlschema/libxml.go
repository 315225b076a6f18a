package xmlschema

// The libxml2 calls this package makes directly (cgo, Debian libxml2-dev):
// schema compilation and validation with structured errors (line, column,
// message), which lestrrat-go/libxml2 does not expose, an entity loader
// that never touches the network, and the XML catalog that maps absolute
// schemaLocations to installed files.

/*
#cgo pkg-config: libxml-2.0
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include <libxml/parser.h>
#include <libxml/parserInternals.h>
#include <libxml/xmlerror.h>
#include <libxml/xmlIO.h>
#include <libxml/catalog.h>
#include <libxml/xmlschemas.h>

typedef struct {
	int line, col, level;
	char *msg;
} pz_problem;

typedef struct {
	pz_problem *items;
	int n, max, total;
	int with_file; // prefix messages with the file (schema compilation)
} pz_errors;

static void pz_add(pz_errors *e, int level, int line, int col, const char *file, const char *msg) {
	if (level >= XML_ERR_ERROR) e->total++;
	if (e->n >= e->max) return;
	size_t fl = (e->with_file && file != NULL) ? strlen(file) + 2 : 0;
	size_t ml = msg != NULL ? strlen(msg) : 0;
	char *s = malloc(fl + ml + 1);
	if (s == NULL) return;
	s[0] = 0;
	if (fl > 0) { strcpy(s, file); strcat(s, ": "); }
	if (msg != NULL) strcat(s, msg);
	// libxml2 ends its messages with a newline.
	size_t l = strlen(s);
	while (l > 0 && (s[l-1] == '\n' || s[l-1] == ' ')) s[--l] = 0;
	pz_problem *p = &e->items[e->n++];
	p->line = line; p->col = col; p->level = level; p->msg = s;
}

static void pz_collect(void *ctx, xmlErrorPtr err) {
	if (ctx == NULL || err == NULL) return;
	pz_add((pz_errors *) ctx, err->level, err->line, err->int2, err->file, err->message);
}

static pz_errors *pz_new_errors(int max, int with_file) {
	pz_errors *e = calloc(1, sizeof(pz_errors));
	if (e == NULL) return NULL;
	e->items = calloc(max > 0 ? max : 1, sizeof(pz_problem));
	if (e->items == NULL) { free(e); return NULL; }
	e->max = max; e->with_file = with_file;
	return e;
}

static void pz_free_errors(pz_errors *e) {
	if (e == NULL) return;
	for (int i = 0; i < e->n; i++) free(e->items[i].msg);
	free(e->items);
	free(e);
}

static pz_problem *pz_item(pz_errors *e, int i) { return &e->items[i]; }

// The errors of the schema compilation running on this thread, so that
// the entity loader can name the URL it refused.
static __thread pz_errors *pz_compiling;

static int pz_remote(const char *url) {
	if (url == NULL) return 0;
	if (strncasecmp(url, "file:", 5) == 0) return 0;
	return strstr(url, "://") != NULL;
}

// pz_loader resolves every external resource through the XML catalog and
// refuses what is still not a local file: libxml2 never opens a network
// connection in this process. A local file that does not exist is looked
// up in the catalog too (relative imports of files not installed beside
// the importing schema).
static xmlParserInputPtr pz_loader(const char *url, const char *id, xmlParserCtxtPtr ctxt) {
	xmlChar *resolved = NULL;
	const char *res = url;
	if (pz_remote(url) || (url != NULL && url[0] == '/' && access(url, F_OK) != 0)) {
		resolved = xmlCatalogResolveURI((const xmlChar *) url);
		if (resolved == NULL) resolved = xmlCatalogResolve((const xmlChar *) id, (const xmlChar *) url);
		if (resolved != NULL) res = (const char *) resolved;
	}
	if (res == NULL || pz_remote(res)) {
		if (pz_compiling != NULL) {
			char buf[2048];
			snprintf(buf, sizeof buf, "%s cannot be resolved to a local file: no catalog entry maps it, and network access is disabled", url);
			pz_add(pz_compiling, XML_ERR_ERROR, 0, 0, NULL, buf);
		}
		if (resolved != NULL) xmlFree(resolved);
		return NULL;
	}
	xmlParserInputPtr in = xmlNoNetExternalEntityLoader(res, id, ctxt);
	if (resolved != NULL) xmlFree(resolved);
	return in;
}

static void pz_init(void) {
	xmlInitParser();
	xmlInitializeCatalog();
	xmlSetExternalEntityLoader(pz_loader);
}

// pz_compile parses and compiles the schema at path. Every message
// (errors and warnings, those of the schema compiler and of the XML parser
// reading the schema files) goes to e.
static xmlSchemaPtr pz_compile(const char *path, pz_errors *e) {
	pz_compiling = e;
	xmlSetStructuredErrorFunc(e, pz_collect);
	xmlSchemaPtr s = NULL;
	xmlSchemaParserCtxtPtr p = xmlSchemaNewParserCtxt(path);
	if (p != NULL) {
		xmlSchemaSetParserStructuredErrors(p, pz_collect, e);
		s = xmlSchemaParse(p);
		xmlSchemaFreeParserCtxt(p);
	}
	xmlSetStructuredErrorFunc(NULL, NULL);
	pz_compiling = NULL;
	return s;
}

// pz_validate validates buf in streaming mode: no tree is built, nothing is
// loaded (no DTD, no entities, no network), and each error carries the
// parser's line and column. Returns 0 when valid.
static int pz_validate(xmlSchemaPtr schema, const char *buf, int len, pz_errors *e) {
	xmlSchemaValidCtxtPtr v = xmlSchemaNewValidCtxt(schema);
	if (v == NULL) return -1;
	xmlSchemaSetValidStructuredErrors(v, pz_collect, e);
	xmlParserInputBufferPtr in = xmlParserInputBufferCreateMem(buf, len, XML_CHAR_ENCODING_NONE);
	if (in == NULL) { xmlSchemaFreeValidCtxt(v); return -1; }
	xmlSAXHandler sax;
	memset(&sax, 0, sizeof sax);
	sax.initialized = XML_SAX2_MAGIC;
	// Well-formedness errors come from the parser, which reports to the
	// thread's structured handler.
	xmlSetStructuredErrorFunc(e, pz_collect);
	int ret = xmlSchemaValidateStream(v, in, XML_CHAR_ENCODING_NONE, &sax, NULL);
	xmlSetStructuredErrorFunc(NULL, NULL);
	xmlSchemaFreeValidCtxt(v);
	return ret;
}

static int pz_catalog_resolves(const char *url) {
	xmlChar *r = xmlCatalogResolveURI((const xmlChar *) url);
	if (r == NULL) r = xmlCatalogResolveSystem((const xmlChar *) url);
	if (r == NULL) return 0;
	xmlFree(r);
	return 1;
}

static int pz_catalog_add_uri(const char *from, const char *to) {
	return xmlCatalogAdd((const xmlChar *) "uri", (const xmlChar *) from, (const xmlChar *) to);
}

static int pz_catalog_add_system(const char *from, const char *to) {
	return xmlCatalogAdd((const xmlChar *) "system", (const xmlChar *) from, (const xmlChar *) to);
}

static int pz_catalog_remove(const char *from) {
	return xmlCatalogRemove((const xmlChar *) from);
}
*/
import "C"

import (
	"errors"
	"fmt"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"unsafe"
)

// MaxProblems is how many problems one validation reports in detail; the
// rest are only counted.
const MaxProblems = 50

// compileMu serialises schema compilation and catalog changes: libxml2's
// catalog is process-global.
var compileMu sync.Mutex

var initOnce sync.Once

func initLibxml() {
	initOnce.Do(func() { C.pz_init() })
}

// schema is a compiled libxml2 schema, shared by all goroutines.
type schema struct {
	ptr C.xmlSchemaPtr
}

// problemList copies the collected problems to Go.
func problemList(e *C.pz_errors, minLevel C.int) (out []Problem, total int) {
	for i := 0; i < int(e.n); i++ {
		p := C.pz_item(e, C.int(i))
		if p.level < minLevel {
			continue
		}
		out = append(out, Problem{Line: int(p.line), Column: int(p.col), Message: C.GoString(p.msg)})
	}
	return out, int(e.total)
}

// compileFile compiles the schema at path. A schema that libxml2 compiles
// although an import could not be loaded is refused too: it would accept
// documents it cannot check.
func compileFile(path string) (*schema, error) {
	// An absolute path makes libxml2 resolve relative imports to absolute
	// paths, the form the generated catalog entries for missing siblings
	// have.
	if abs, err := filepath.Abs(path); err == nil {
		path = abs
	}
	initLibxml()
	compileMu.Lock()
	defer compileMu.Unlock()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	cpath := C.CString(path)
	defer C.free(unsafe.Pointer(cpath))
	e := C.pz_new_errors(200, 1)
	if e == nil {
		return nil, errors.New("xmlschema: out of memory")
	}
	defer C.pz_free_errors(e)
	s := C.pz_compile(cpath, e)
	all, _ := problemList(e, C.XML_ERR_WARNING)
	var reasons []string
	unresolved := false
	for _, p := range all {
		if strings.Contains(p.Message, "cannot be resolved to a local file") || strings.Contains(p.Message, "Failed to locate a schema") ||
			strings.Contains(p.Message, "failed to load external entity") {
			unresolved = true
		}
		if !slices.Contains(reasons, p.Message) {
			reasons = append(reasons, p.Message)
		}
	}
	if s != nil && !unresolved {
		return &schema{ptr: s}, nil
	}
	if s != nil {
		C.xmlSchemaFree(s)
	}
	if len(reasons) == 0 {
		reasons = []string{"libxml2 gave no reason"}
	}
	// The first reasons name the cause; what follows is mostly its echo.
	if len(reasons) > 6 {
		reasons = append(reasons[:6], fmt.Sprintf("… and %d more", len(reasons)-6))
	}
	return nil, errors.New(strings.Join(reasons, "; "))
}

// validate checks doc against s. It returns the problems (at most
// MaxProblems) and how many errors there were in all.
func (s *schema) validate(doc []byte) (problems []Problem, total int, err error) {
	initLibxml()
	if len(doc) == 0 {
		return []Problem{{Line: 1, Column: 1, Message: "the document is empty"}}, 1, nil
	}
	if len(doc) > 1<<31-1 {
		return nil, 0, errors.New("xmlschema: document too large")
	}
	e := C.pz_new_errors(MaxProblems, 0)
	if e == nil {
		return nil, 0, errors.New("xmlschema: out of memory")
	}
	defer C.pz_free_errors(e)
	ret := C.pz_validate(s.ptr, (*C.char)(unsafe.Pointer(&doc[0])), C.int(len(doc)), e)
	runtime.KeepAlive(doc)
	problems, total = problemList(e, C.XML_ERR_ERROR)
	switch {
	case ret == 0 && total == 0:
		return nil, 0, nil
	case ret < 0 && total == 0:
		return nil, 0, errors.New("xmlschema: libxml2 could not run the validation")
	case total == 0:
		return []Problem{{Message: fmt.Sprintf("libxml2 reports the document invalid (code %d) without a message", int(ret))}}, 1, nil
	}
	return problems, total, nil
}

// catalogAdd maps an absolute schema location to a local file, as an XML
// catalog uri and system entry.
func catalogAdd(from, to string) error {
	initLibxml()
	compileMu.Lock()
	defer compileMu.Unlock()
	cf, ct := C.CString(from), C.CString(to)
	defer C.free(unsafe.Pointer(cf))
	defer C.free(unsafe.Pointer(ct))
	if C.pz_catalog_add_uri(cf, ct) != 0 || C.pz_catalog_add_system(cf, ct) != 0 {
		return fmt.Errorf("xmlschema: catalog entry %s → %s refused by libxml2", from, to)
	}
	generated[from] = true
	return nil
}

// catalogForgetGenerated removes the entries catalogAdd made, so that a
// new Load maps locations afresh (an official module installed since then
// replaces a stand-in; a directory no longer configured provides nothing).
func catalogForgetGenerated() error {
	initLibxml()
	compileMu.Lock()
	defer compileMu.Unlock()
	for from := range generated {
		cf := C.CString(from)
		ret := C.pz_catalog_remove(cf)
		C.free(unsafe.Pointer(cf))
		if ret < 0 {
			return fmt.Errorf("xmlschema: libxml2 refuses to remove the catalog entry for %s", from)
		}
		delete(generated, from)
	}
	return nil
}

// catalogLoad makes an OASIS XML catalog file effective.
func catalogLoad(path string) error {
	initLibxml()
	compileMu.Lock()
	defer compileMu.Unlock()
	cp := C.CString(path)
	defer C.free(unsafe.Pointer(cp))
	if C.xmlLoadCatalog(cp) != 0 {
		return fmt.Errorf("xmlschema: libxml2 cannot load the catalog %s", path)
	}
	return nil
}

// catalogResolves reports whether the catalog maps url already.
func catalogResolves(url string) bool {
	initLibxml()
	compileMu.Lock()
	defer compileMu.Unlock()
	cu := C.CString(url)
	defer C.free(unsafe.Pointer(cu))
	return C.pz_catalog_resolves(cu) != 0
}

// free releases the compiled schema; only for schemas no goroutine uses.
func (s *schema) free() {
	if s != nil && s.ptr != nil {
		C.xmlSchemaFree(s.ptr)
		s.ptr = nil
	}
}
