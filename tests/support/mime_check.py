"""Parse an email file with Python's own email package (an independent
reader of what channel_email wrote) and print what it found as one JSON
object: decoded headers and every leaf part's type, charset and decoded
text. Any python3 runs it (standard library only).

  mime_check.py FILE.eml
  {"subject": "...", "from": "...", "to": "...", "message_id": "...",
   "date": "...", "x_baton_key": "...", "list_unsubscribe": "...",
   "content_type": "multipart/alternative", "defects": 0,
   "parts": [{"type": "text/plain", "charset": "utf-8", "cte": "quoted-printable",
              (text: line ends as \n)
              "text": "..."}, ...],
   "max_line": 76}
"""
import email
import email.policy
import json
import sys

raw = open(sys.argv[1], "rb").read()
msg = email.message_from_bytes(raw, policy=email.policy.default)
parts = []
defects = len(msg.defects)
for p in msg.walk():
    defects += len(p.defects)
    if p.is_multipart():
        continue
    parts.append({"type": p.get_content_type(), "charset": p.get_content_charset(),
                  "cte": p.get("Content-Transfer-Encoding"),
                  "text": p.get_content().replace("\r\n", "\n")})
print(json.dumps({
    "subject": str(msg["Subject"]), "from": str(msg["From"]), "to": str(msg["To"]),
    "message_id": str(msg["Message-ID"]), "date": str(msg["Date"]),
    "x_baton_key": str(msg["X-Baton-Key"]), "list_unsubscribe": str(msg["List-Unsubscribe"]),
    "content_type": msg.get_content_type(), "defects": defects, "parts": parts,
    "max_line": max(len(l) for l in raw.split(b"\r\n")),
    "bare_lf": raw.replace(b"\r\n", b"").count(b"\n"),
}, ensure_ascii=False, sort_keys=True))
