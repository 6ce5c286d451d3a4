/* config/http_conf — the `http = { ... }` block of baton.cfg (FORMATS.md
 * §Additions "HTTP"): where `baton serve` listens, its limits, TLS and
 * its bearer tokens. Absent: no HTTP server. */
#ifndef BATON_CONFIG_HTTP_CONF_H
#define BATON_CONFIG_HTTP_CONF_H

#include <libconfig.h>
#include <stddef.h>
#include <stdint.h>

#include "base/diag.h"

/* Token scopes; admin holds every other one. */
enum {
    HTTP_SCOPE_EVENTS = 1,    /* "events:write" */
    HTTP_SCOPE_CAMPAIGNS = 2, /* "campaigns:run" */
    HTTP_SCOPE_READ = 4,      /* "read" */
    HTTP_SCOPE_ADMIN = 8,     /* "admin" */
};

typedef struct conf_token {
    char *name;
    char *secret; /* never logged */
    unsigned scopes;
} conf_token;

/* A provider's bounce / complaint webhook as a mapping of its JSON
 * (http.feedback): dotted paths to the fields, and which values of the
 * type field mean what. */
typedef struct conf_feedback {
    char *name;
    char *type, *address, *reason, *message_id, *key; /* paths; NULL unset */
    char **hard, **soft, **complaint;                 /* NULL-terminated */
} conf_feedback;

typedef struct conf_http {
    int on;       /* the block is present */
    char *listen; /* as written: "127.0.0.1:8080", "[::1]:8080" */
    char *host;   /* "127.0.0.1", "::1" */
    int port;
    char *public_url;         /* NULL when unset */
    char *link_secret;        /* signs public links (delivery/linktoken); never logged */
    char *tls_cert, *tls_key; /* resolved paths, or NULL */
    char *web_root;           /* resolved path, or NULL: the default */
    conf_token *tokens;
    size_t ntokens;
    conf_feedback *feedback;
    size_t nfeedback;
    int threads;               /* the server's thread pool */
    int connections;           /* open connections at most */
    int connections_per_ip;    /* from one client address at most; 0: no limit */
    int64_t timeout_ms;        /* idle time allowed on a connection */
    int64_t header_timeout_ms; /* headers must be whole this long after the connection
                                  opened or its previous answer */
    int64_t body_timeout_ms;   /* a body must be whole this long after its headers */
    int64_t max_body;          /* bytes of a request body at most */
    int64_t max_events;        /* events in one POST /v1/events at most */
    const char *file;
    int line;
} conf_http;

/* Validate the http group g (NULL: absent) into h; errors into d (with
 * file:line). dir resolves relative paths. */
void conf_http_load(conf_http *h, const config_setting_t *g, const char *dir, diag *d);
void conf_http_free(conf_http *h);
/* The configured feedback mapping of that name, or NULL. */
const conf_feedback *conf_http_feedback(const conf_http *h, const char *name);
/* Letters, digits, '-', '_'; 1..64 bytes. */
int http_feedback_name_ok(const char *s);
/* "events:write" -> HTTP_SCOPE_EVENTS; 0 when unknown. */
unsigned conf_http_scope(const char *name);

#endif
