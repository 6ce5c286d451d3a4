/* The RFC 3464 reader (delivery/dsn.h). */
#include "delivery/dsn.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/mem.h"

/* The end of the header block at p (the blank line's end), or NULL. */
static const char *headers_end(const char *p, const char *end)
{
    for (const char *s = p; s < end; s++)
        if (*s == '\n' &&
            (s + 1 < end && (s[1] == '\n' || (s[1] == '\r' && s + 2 < end && s[2] == '\n'))))
            return s + (s[1] == '\n' ? 2 : 3);
    return NULL;
}

/* Header name's value in [p, end) (unfolded, trimmed) into out. */
static int header(const char *p, const char *end, const char *name, char *out, size_t outlen)
{
    size_t nl = strlen(name);
    for (const char *s = p; s < end;) {
        const char *eol = memchr(s, '\n', (size_t)(end - s));
        if (!eol)
            eol = end;
        if ((size_t)(eol - s) > nl && !strncasecmp(s, name, nl) && s[nl] == ':') {
            size_t o = 0;
            const char *v = s + nl + 1;
            for (;;) {
                for (; v < eol && o + 1 < outlen; v++)
                    if (*v != '\r')
                        out[o++] = *v == '\t' ? ' ' : *v;
                /* a folded line goes on, its indent one space */
                if (eol + 1 < end && (eol[1] == ' ' || eol[1] == '\t')) {
                    v = eol + 1;
                    while (v < end && (*v == ' ' || *v == '\t'))
                        v++;
                    if (o + 1 < outlen)
                        out[o++] = ' ';
                    eol = memchr(v, '\n', (size_t)(end - v));
                    if (!eol)
                        eol = end;
                    continue;
                }
                break;
            }
            out[o] = 0;
            char *a = out;
            while (*a == ' ')
                a++;
            memmove(out, a, strlen(a) + 1);
            for (o = strlen(out); o && (out[o - 1] == ' '); o--)
                out[o - 1] = 0;
            return 1;
        }
        s = eol + 1;
    }
    return 0;
}

/* A parameter (boundary=...) of a Content-Type value. */
static int ct_param(const char *ct, const char *name, char *out, size_t outlen)
{
    size_t nl = strlen(name);
    for (const char *p = strchr(ct, ';'); p; p = strchr(p + 1, ';')) {
        const char *s = p + 1;
        while (*s == ' ')
            s++;
        if (strncasecmp(s, name, nl) || s[nl] != '=')
            continue;
        s += nl + 1;
        size_t o = 0;
        if (*s == '"') {
            for (s++; *s && *s != '"' && o + 1 < outlen; s++)
                out[o++] = *s;
        } else {
            for (; *s && *s != ';' && *s != ' ' && o + 1 < outlen; s++)
                out[o++] = *s;
        }
        out[o] = 0;
        return o > 0;
    }
    return 0;
}

static int fail(dsn_report *r, size_t *off, char *err, size_t errlen, size_t at, const char *msg)
{
    dsn_report_free(r);
    *off = at;
    snprintf(err, errlen, "%s", msg);
    return -1;
}

static void add(dsn_report *r, dispatch_feedback_type t, const char *address, const char *reason)
{
    r->v = xrealloc(r->v, (r->n + 1) * sizeof *r->v);
    r->v[r->n].type = t;
    r->v[r->n].address = xstrdup(address);
    r->v[r->n].reason = xstrdup(reason);
    r->n++;
}

int dsn_parse(const char *b, size_t len, dsn_report *out, size_t *off, char *err, size_t errlen)
{
    const char *end = b + len;
    memset(out, 0, sizeof *out);
    const char *he = headers_end(b, end);
    char ct[512], boundary[200];
    if (!he || !header(b, he, "Content-Type", ct, sizeof ct))
        return fail(out, off, err, errlen, 0,
                    "no message headers with a Content-Type (post the whole message)");
    if (strncasecmp(ct, "multipart/report", 16) ||
        !ct_param(ct, "boundary", boundary, sizeof boundary))
        return fail(out, off, err, errlen, 0,
                    "not a delivery status notification: Content-Type must be "
                    "multipart/report; report-type=delivery-status (RFC 3464)");
    char delim[210];
    snprintf(delim, sizeof delim, "--%s", boundary);
    size_t dl = strlen(delim);
    const char *status_part = NULL, *status_end = NULL;
    const char *p = memmem(he, (size_t)(end - he), delim, dl);
    while (p) {
        const char *part = p + dl;
        if (part + 2 <= end && part[0] == '-' && part[1] == '-')
            break; /* the closing delimiter */
        const char *nx = memmem(part, (size_t)(end - part), delim, dl);
        const char *pend = nx ? nx : end;
        const char *ph = memchr(part, '\n', (size_t)(pend - part));
        ph = ph ? ph + 1 : pend;
        const char *phe = headers_end(ph, pend);
        char pct[256] = "";
        if (phe)
            header(ph, phe, "Content-Type", pct, sizeof pct);
        else if (ph < pend && (*ph == '\n' || *ph == '\r')) /* no part headers */
            phe = ph + (*ph == '\r' ? 2 : 1);
        if (phe && !strncasecmp(pct, "message/delivery-status", 23)) {
            status_part = phe;
            status_end = pend;
        } else if (phe && (!strncasecmp(pct, "message/rfc822", 14) ||
                           !strncasecmp(pct, "text/rfc822-headers", 19))) {
            const char *ohe = headers_end(phe, pend);
            if (!ohe)
                ohe = pend;
            header(phe, ohe, "X-Baton-Key", out->key, sizeof out->key);
            header(phe, ohe, "Message-ID", out->message_id, sizeof out->message_id);
        }
        p = nx;
    }
    if (!status_part)
        return fail(out, off, err, errlen, (size_t)(he - b),
                    "no message/delivery-status part in the report");
    /* per-message fields, then one group per recipient, blank lines between */
    const char *g = headers_end(status_part, status_end);
    if (!g)
        return fail(out, off, err, errlen, (size_t)(status_part - b),
                    "the delivery-status part has no per-recipient fields");
    /* Postfix names its queue id: the `queued as` id the delivery log
     * holds as provider_id when that MTA took the message from baton */
    header(status_part, g, "X-Postfix-Queue-ID", out->queue_id, sizeof out->queue_id);
    int groups = 0;
    while (g < status_end) {
        while (g < status_end && (*g == '\r' || *g == '\n'))
            g++;
        if (g >= status_end || !strncmp(g, delim, dl))
            break;
        const char *ge = headers_end(g, status_end);
        if (!ge)
            ge = status_end;
        char rcpt[320], action[64] = "", st[32] = "", dcode[256] = "";
        if (!header(g, ge, "Final-Recipient", rcpt, sizeof rcpt))
            return fail(out, off, err, errlen, (size_t)(g - b),
                        "a per-recipient group lacks Final-Recipient");
        if (!header(g, ge, "Action", action, sizeof action))
            return fail(out, off, err, errlen, (size_t)(g - b),
                        "a per-recipient group lacks Action");
        header(g, ge, "Status", st, sizeof st);
        header(g, ge, "Diagnostic-Code", dcode, sizeof dcode);
        /* "rfc822; ann@example.com" */
        char *addr = strchr(rcpt, ';');
        addr = addr ? addr + 1 : rcpt;
        while (*addr == ' ')
            addr++;
        groups++;
        dispatch_feedback_type ft;
        if (!strcasecmp(action, "failed"))
            ft = st[0] == '4' ? FEEDBACK_SOFT_BOUNCE : FEEDBACK_HARD_BOUNCE;
        else if (!strcasecmp(action, "delayed"))
            ft = FEEDBACK_SOFT_BOUNCE;
        else {
            out->ignored++; /* delivered, relayed, expanded */
            g = ge;
            continue;
        }
        char why[320];
        snprintf(why, sizeof why, "%s%s%s", st, *st && *dcode ? " " : "", dcode);
        add(out, ft, addr, why);
        g = ge;
    }
    if (!groups)
        return fail(out, off, err, errlen, (size_t)(status_part - b),
                    "the delivery-status part has no per-recipient fields");
    /* no X-Baton-Key (a relay stripped it, no headers came back): the
     * returned Message-ID, the report's In-Reply-To and References (as
     * Exchange writes them); the first msg-id that is a baton Message-ID
     * names the delivery */
    if (!*out->key) {
        char refs[2048] = "", irt[512] = "";
        header(b, he, "In-Reply-To", irt, sizeof irt);
        header(b, he, "References", refs, sizeof refs);
        const char *cands[] = {out->message_id, irt, refs};
        for (size_t i = 0; i < sizeof cands / sizeof *cands && !*out->key; i++)
            for (const char *c = strchr(cands[i], '<'); c && !*out->key; c = strchr(c, '<')) {
                const char *e = strchr(c, '>');
                if (!e)
                    break;
                char one[512];
                if ((size_t)(e - c) < sizeof one - 1) {
                    memcpy(one, c, (size_t)(e - c + 1));
                    one[e - c + 1] = 0;
                    if (!baton_message_id_key(one, out->key, sizeof out->key))
                        out->key[0] = 0;
                }
                c = e + 1;
            }
    }
    return 0;
}

void dsn_report_free(dsn_report *r)
{
    for (size_t i = 0; i < r->n; i++) {
        free(r->v[i].address);
        free(r->v[i].reason);
    }
    free(r->v);
    memset(r, 0, sizeof *r);
}

const char *dsn_provider_id(const dsn_report *r)
{
    return *r->queue_id ? r->queue_id : *r->message_id ? r->message_id : NULL;
}
