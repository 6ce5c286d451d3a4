/* daemon/http — the HTTP face of `baton serve` (FORMATS.md §Additions
 * "HTTP", docs/http.md): libmicrohttpd with a thread pool, a connection
 * limit, a per-connection timeout and a request body limit; bearer tokens
 * with scopes; JSON answers and errors; static files under /ui/.
 *
 * The server outlives a reload: serve detaches what it runs (requests
 * that arrive meanwhile wait for the next attach, up to 30 s, then get
 * 503) and attaches the new configuration's. Tokens and limits are read
 * from the attached configuration; the listener (address, TLS, pool) is
 * fixed for the server's life: a reload that changes it starts another
 * server (http_listener_differs). */
#ifndef BATON_DAEMON_HTTP_H
#define BATON_DAEMON_HTTP_H

#include <stddef.h>

#include "campaign/engine.h"
#include "config/http_conf.h"
#include "journey/journey.h"
#include "journey/runner.h"
#include "plugin/app.h"
#include "store/store.h"

/* What a request may reach: serve's running configuration. Borrowed
 * between http_attach and http_detach. */
typedef struct http_env {
    const char *config; /* the configuration file (campaign runs and plans open their own app) */
    app *a;
    store *st; /* serve's writer connection (campaign runs record through it) */
    journey **js;
    size_t njs;
    const jchannel *ch;
    size_t nch;
    jrunner *r;
    camp_dispatcher_fn dispatcher_for;
    void *dispatcher_ud;
} http_env;

typedef struct http_server http_server;

/* The listener of c: address, TLS (the PEM files are read now), pool,
 * limits of connections and time. */
typedef struct http_listener {
    char *host;
    int port;
    int threads, connections, connections_per_ip;
    unsigned timeout_s;
    int64_t header_timeout_ms; /* a request's headers are whole by then, or it is cut */
    char *cert_pem, *key_pem;  /* NULL: plain HTTP */
} http_listener;

/* Read c's listener (its TLS files). 0, or -1 with err. */
int http_listener_load(http_listener *l, const conf_http *c, char *err, size_t errlen);
void http_listener_free(http_listener *l);
/* 0 when a and b are the same listener. */
int http_listener_differs(const http_listener *a, const http_listener *b);
/* 1 when a and b bind the same address and port. */
int http_listener_same_port(const http_listener *a, const http_listener *b);

/* Listen (l is taken over: zeroed on return). NULL with err. Requests
 * wait until http_attach (suspended, up to 30 s, then 503); /healthz
 * and /readyz are answered meanwhile. */
http_server *http_start(http_listener *l, char *err, size_t errlen);
/* The listener s runs (its port is the one bound, for port 0). */
const http_listener *http_server_listener(const http_server *s);
/* Serve env from now on (copied; what it points to is borrowed). */
void http_attach(http_server *s, const http_env *env);
/* Stop serving env: waits until no request uses it (event posts waiting
 * for their commit, plans, campaign runs started over HTTP). */
void http_detach(http_server *s);
/* Close the listener and every connection; detaches first. NULL: no-op. */
void http_stop(http_server *s);

#endif
