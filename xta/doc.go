// Package xta is the XTA 2 Version 3 web service (XTA-Webservice 2.1.1):
// SOAP 1.2 with WS-Addressing and MTOM, the management, send and
// message-box ports, 9xxx faults, transport reports, the delivery job, and
// a client for any XTA 2 V3 server.
package xta
