package xta_test

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestZeepInterop drives the node with Debian's python3-zeep loaded with the
// official XTA.wsdl over mTLS: sendMessage with an attachment,
// getStatusList, getMessage, close, getTransportReport.
func TestZeepInterop(t *testing.T) {
	python := "/usr/bin/python3"
	if err := exec.Command(python, "-c", "import zeep").Run(); err != nil {
		t.Fatalf("python3-zeep is missing (make test installs it): %v", err)
	}
	h := startHarness(t)
	payload := `<?xml version="1.0" encoding="UTF-8"?><suchanfrage>Müller &amp; Söhne</suchanfrage>`
	attachment := make([]byte, 200<<10)
	rand.Read(attachment)
	attachmentFile := filepath.Join(h.dir, "anlage.pdf")
	if err := os.WriteFile(attachmentFile, attachment, 0o600); err != nil {
		t.Fatal(err)
	}
	wsdl, _ := filepath.Abs(filepath.Join(specs, "xta2/v3/XTA.wsdl"))
	cmd := exec.Command(python, "testdata/zeep_roundtrip.py", wsdl)
	cmd.Env = append(os.Environ(),
		"XTA_BASE="+strings.Replace(h.base, "127.0.0.1", "localhost", 1),
		"XTA_CA="+filepath.Join(h.dir, "ca.crt"),
		"XTA_SENDER_CERT="+h.certFiles["muenchen"][0], "XTA_SENDER_KEY="+h.certFiles["muenchen"][1],
		"XTA_READER_CERT="+h.certFiles["koeln"][0], "XTA_READER_KEY="+h.certFiles["koeln"][1],
		"XTA_AUTHOR="+author, "XTA_READER="+reader,
		"XTA_PAYLOAD="+payload, "XTA_ATTACHMENT_FILE="+attachmentFile,
	)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("zeep: %v\n%s", err, stderr.String())
	}
	var got struct {
		MessageID, Message, MessageFilename string
		Listed, Attachments, Records        []string
		Status                              int
	}
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("zeep output %q: %v", out, err)
	}
	if !slices.Contains(got.Listed, got.MessageID) {
		t.Errorf("getStatusList did not list %s: %v", got.MessageID, got.Listed)
	}
	if m, _ := base64.StdEncoding.DecodeString(got.Message); string(m) != payload || got.MessageFilename != "nachricht.xml" {
		t.Errorf("message came back as %q (%s)", m, got.MessageFilename)
	}
	if len(got.Attachments) != 1 {
		t.Fatalf("%d attachments came back", len(got.Attachments))
	}
	if a, _ := base64.StdEncoding.DecodeString(got.Attachments[0]); !bytes.Equal(a, attachment) {
		t.Errorf("attachment differs")
	}
	// The payload's namespace has no installed schema; under the default
	// tenant policy (warn) it is accepted and the report turns yellow.
	if got.Status != 2 || !slices.Contains(got.Records, "CLOSED") || !slices.Contains(got.Records, "SCHEMA_MISSING") {
		t.Errorf("report status %d records %v, want yellow with SCHEMA_MISSING and CLOSED", got.Status, got.Records)
	}
}
