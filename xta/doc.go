// Package xta will be the XTA 2 Version 3 web service (XTA-Webservice
// 2.1.1): SOAP 1.2 with WS-Addressing and MTOM, the management, send and
// message-box ports, 9xxx faults, transport reports, and a client.
//
// Nothing is built here yet; see the XTA 2 issue.
package xta
