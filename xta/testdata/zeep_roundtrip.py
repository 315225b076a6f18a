"""Drives a Parzelle XTA node with zeep, loaded with the official XTA.wsdl.

Interoperability proof: code nobody on the Parzelle team wrote sends a
message with an attachment (sender certificate), lists, fetches and closes
it (reader certificate) and reads the transport report. Prints one JSON
object with what came back; the Go test compares it with what was sent.

Usage: python3 zeep_roundtrip.py WSDL  (settings in XTA_* environment variables)
"""
import base64
import datetime
import json
import os
import sys
import time
import uuid

from requests import Session
from zeep import Client
from zeep.transports import Transport
from zeep.wsa import WsAddressingPlugin

NS = "{http://xoev.de/transport/xta/211}"
env = os.environ


def client(cert):
    s = Session()
    s.trust_env = False  # REQUESTS_CA_BUNDLE would override verify
    s.verify = env["XTA_CA"]
    s.cert = (env["XTA_%s_CERT" % cert], env["XTA_%s_KEY" % cert])
    c = Client(sys.argv[1], transport=Transport(session=s), plugins=[WsAddressingPlugin()])
    base = env["XTA_BASE"]
    return (c, c.create_service(NS + "managementHttpsBinding", base + "/xta/v3/management"),
            c.create_service(NS + "sendXTAHttpsBinding", base + "/xta/v3/send"),
            c.create_service(NS + "msgBoxHttpsBinding", base + "/xta/v3/msgbox"))


def party(c, ident):
    Party = c.get_type("{http://www.osci.eu/ws/2014/10/transport}PartyType")
    Ident = c.get_type("{http://www.osci.eu/ws/2014/10/transport}PartyIdentifierType")
    return Party(Identifier=Ident(ident, type="xoev"))


sender, s_mgmt, s_send, _ = client("SENDER")
reader, _, _, r_box = client("READER")
author_id, reader_id = env["XTA_AUTHOR"], env["XTA_READER"]
payload = env["XTA_PAYLOAD"].encode("utf-8")
with open(env["XTA_ATTACHMENT_FILE"], "rb") as f:
    attachment = f.read()

s_mgmt.checkAccountActive(_soapheaders={"AuthorIdentifier": party(sender, author_id)})
message_id = "urn:de:xta:messageid:zeep:" + str(uuid.uuid4())
meta = {
    "DeliveryAttributes": {"Origin": datetime.datetime.now(datetime.timezone.utc)},
    "Originators": {"Author": party(sender, author_id)},
    "Destinations": {"Reader": party(sender, reader_id)},
    "MsgIdentification": {"MessageID": message_id},
    "Qualifier": {
        "Service": "http://osci.de/xmeld33/xmeld33freieSuche.wsdl",
        "BusinessScenario": {"Defined": {"code": "XMELD_DATA", "listURI": "urn:de:xta:codeliste:business.scenario", "listVersionID": "3.6"}},
        "MessageType": {"code": "datenabruf.freieSuche.suchanfrage.1332", "listURI": "urn:de:payloadSchema:elementName",
                        "listVersionID": "1.0", "payloadSchema": "http://www.osci.de/xmeld33"},
    },
}
s_send.sendMessage(
    ContentContainer={
        "Message": {"_value_1": payload, "contentType": "text/xml", "encoding": "UTF-8", "filename": "nachricht.xml", "size": len(payload)},
        "Attachment": [{"_value_1": attachment, "contentType": "application/pdf", "filename": "anlage.pdf"}],
    },
    _soapheaders={"MessageMetaData": meta},
)

author_hdr = {"AuthorIdentifier": party(reader, reader_id)}
listed = []
for _ in range(200):
    res = r_box.getStatusList(MsgSelector={"newEntry": True}, maxListItems=10, ListForm="MessageMetaData", _soapheaders=author_hdr)
    entries = res.body.MessageMetaData or [] if hasattr(res, "body") else res.MessageMetaData or []
    listed = [e.MsgIdentification.MessageID._value_1 if hasattr(e.MsgIdentification.MessageID, "_value_1") else e.MsgIdentification.MessageID for e in entries]
    if message_id in listed:
        break
    time.sleep(0.05)

fetched = r_box.getMessage(MsgSelector={"MessageID": [message_id]}, _soapheaders=author_hdr)
body = fetched.body if hasattr(fetched, "body") else fetched
cc = body.ContentContainer
r_box.close(LastMsgReceived=[message_id], MsgBoxRequestID="urn:zeep:close", _soapheaders=author_hdr)

report = s_mgmt.getTransportReport(message_id, _soapheaders={"AuthorIdentifier": party(sender, author_id)})
status = report.MessageStatus
records = []
for lst in ("ErrorList", "WarnList", "InfoList"):
    items = getattr(status, lst)
    if items is None:
        continue
    for rec in (items.Error if lst == "ErrorList" else items.Warning if lst == "WarnList" else items.Info) or []:
        records.append(rec.Code.code)

print(json.dumps({
    "messageId": message_id,
    "listed": listed,
    "message": base64.b64encode(cc.Message._value_1).decode(),
    "messageFilename": cc.Message.filename,
    "attachments": [base64.b64encode(a._value_1).decode() for a in (cc.Attachment or [])],
    "status": int(status.Status),
    "records": records,
}))
