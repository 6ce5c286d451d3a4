/* config/http_conf — the http block (see http_conf.h). */
#include "config/http_conf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/mem.h"
#include "base/suggest.h"
#include "config/keymap.h"

static const baton_config_key http_keys[] = {
    {.name = "listen",
     .type = BATON_CFG_STRING,
     .required = 1,
     .help = "address:port to listen on, e.g. \"127.0.0.1:8080\" or \"[::1]:8080\""},
    {.name = "public_url",
     .type = BATON_CFG_STRING,
     .help = "base of unsubscribe and tracking links, e.g. \"https://news.example.com\""},
    {.name = "link_secret",
     .type = BATON_CFG_STRING,
     .help = "signs unsubscribe and tracking links (16+ characters; \"${env:NAME}\")"},
    {.name = "tls_cert", .type = BATON_CFG_PATH, .help = "PEM certificate (with tls_key: HTTPS)"},
    {.name = "tls_key", .type = BATON_CFG_PATH, .help = "PEM private key"},
    {.name = "web_root",
     .type = BATON_CFG_PATH,
     .help = "folder served under /ui/ (default: the installed web console)"},
    {.name = "threads",
     .type = BATON_CFG_INT,
     .default_value = "4",
     .has_range = 1,
     .min = 1,
     .max = 64,
     .help = "the server's thread pool"},
    {.name = "connections",
     .type = BATON_CFG_INT,
     .default_value = "256",
     .has_range = 1,
     .min = 1,
     .max = 100000,
     .help = "open connections at most"},
    {.name = "connections_per_ip",
     .type = BATON_CFG_INT,
     .default_value = "0",
     .has_range = 1,
     .min = 0,
     .max = 100000,
     .help = "open connections from one client address at most (0: no limit; behind a proxy "
             "every client is the proxy)"},
    {.name = "timeout",
     .type = BATON_CFG_DURATION,
     .default_value = "30s",
     .help = "a connection idle (or a client this slow) for this long is closed"},
    {.name = "header_timeout",
     .type = BATON_CFG_DURATION,
     .default_value = "60s",
     .help = "a request's headers not whole this long after the connection opened (or its "
             "previous answer) are cut (a client that trickles them)"},
    {.name = "body_timeout",
     .type = BATON_CFG_DURATION,
     .default_value = "60s",
     .help = "a request body still arriving this long after its headers is cut (a client that "
             "trickles it)"},
    {.name = "max_body",
     .type = BATON_CFG_INT,
     .default_value = "4194304",
     .has_range = 1,
     .min = 1024,
     .max = 1073741824,
     .help = "bytes of a request body at most (413 above)"},
    {.name = "max_events",
     .type = BATON_CFG_INT,
     .default_value = "1000",
     .has_range = 1,
     .min = 1,
     .max = 1000000,
     .help = "events in one POST /v1/events at most (413 above)"},
    {.name = "tokens", .type = BATON_CFG_LIST, .help = "( { name; secret; scopes = [...]; } )"},
    {.name = "feedback",
     .type = BATON_CFG_LIST,
     .help = "( { name; type; address; reason; message_id; key; hard; soft; complaint; } ): "
             "bounce and complaint webhooks as JSON mappings"},
    {0}};

static const char *const scope_names[] = {"events:write", "campaigns:run", "read", "admin", NULL};

unsigned conf_http_scope(const char *name)
{
    for (unsigned i = 0; scope_names[i]; i++)
        if (strcmp(scope_names[i], name) == 0)
            return 1u << i;
    return 0;
}

/* "host:port", "[v6]:port" */
static int split_listen(const char *s, char **host, int *port)
{
    const char *colon;
    const char *h = s;
    size_t hl;
    if (*s == '[') {
        const char *close = strchr(s, ']');
        if (!close || close[1] != ':')
            return -1;
        h = s + 1;
        hl = (size_t)(close - h);
        colon = close + 1;
    } else {
        colon = strrchr(s, ':');
        if (!colon)
            return -1;
        hl = (size_t)(colon - s);
    }
    char *end;
    long p = strtol(colon + 1, &end, 10);
    if (!colon[1] || *end || p < 0 || p > 65535 || hl == 0)
        return -1;
    *host = xstrndup(h, hl);
    *port = (int)p;
    return 0;
}

static void load_tokens(conf_http *h, const config_setting_t *l, diag *d)
{
    const char *file = config_setting_source_file(l);
    if (!config_setting_is_list(l) && !(config_setting_is_array(l) && !config_setting_length(l))) {
        diag_error(d, file, (int)config_setting_source_line(l),
                   "http.tokens must be a list ( { name = \"...\"; secret = \"...\"; scopes = [ "
                   "\"read\" ]; } )");
        return;
    }
    int n = config_setting_length(l);
    for (int i = 0; i < n; i++) {
        config_setting_t *t = config_setting_get_elem(l, (unsigned)i);
        int line = (int)config_setting_source_line(t);
        if (!config_setting_is_group(t)) {
            diag_error(d, file, line, "http.tokens[%d] must be a group { name; secret; scopes; }",
                       i);
            continue;
        }
        const char *name = NULL, *secret = NULL;
        unsigned scopes = 0;
        int bad = 0;
        for (int k = 0; k < config_setting_length(t); k++) {
            config_setting_t *m = config_setting_get_elem(t, (unsigned)k);
            const char *key = config_setting_name(m);
            int mline = (int)config_setting_source_line(m);
            if (!strcmp(key, "name") || !strcmp(key, "secret")) {
                if (config_setting_type(m) != CONFIG_TYPE_STRING) {
                    diag_error(d, file, mline, "http.tokens[%d].%s must be a string", i, key);
                    bad = 1;
                } else if (!strcmp(key, "name"))
                    name = config_setting_get_string(m);
                else
                    secret = config_setting_get_string(m);
            } else if (!strcmp(key, "scopes")) {
                if (!config_setting_is_array(m) && !config_setting_is_list(m)) {
                    diag_error(d, file, mline, "http.tokens[%d].scopes must be a list of strings",
                               i);
                    bad = 1;
                    continue;
                }
                for (int s = 0; s < config_setting_length(m); s++) {
                    const char *v = config_setting_get_string_elem(m, s);
                    unsigned bit = v ? conf_http_scope(v) : 0;
                    if (!bit) {
                        const char *near = v ? suggest_nearest(v, scope_names, 4) : NULL;
                        diag_error(d, file, mline,
                                   "http.tokens[%d].scopes: unknown scope '%s'%s%s%s; scopes: "
                                   "events:write, campaigns:run, read, admin",
                                   i, v ? v : "(not a string)", near ? " (did you mean '" : "",
                                   near ? near : "", near ? "'?)" : "");
                        bad = 1;
                    }
                    scopes |= bit;
                }
            } else {
                diag_error(d, file, mline,
                           "http.tokens[%d]: unknown key '%s'; known keys: name, secret, scopes", i,
                           key);
                bad = 1;
            }
        }
        if (!name || !*name) {
            diag_error(d, file, line, "http.tokens[%d]: missing required key 'name'", i);
            bad = 1;
        }
        if (!secret || !*secret) {
            diag_error(d, file, line,
                       "http.tokens[%d]: missing or empty 'secret' (e.g. secret = "
                       "\"${env:BATON_TOKEN}\")",
                       i);
            bad = 1;
        } else if (strlen(secret) < 16) {
            diag_error(d, file, line,
                       "http.tokens[%d] (%s): the secret is shorter than 16 characters; use a "
                       "long random one (e.g. openssl rand -hex 32)",
                       i, name ? name : "?");
            bad = 1;
        }
        for (size_t j = 0; name && j < h->ntokens; j++)
            if (!strcmp(h->tokens[j].name, name)) {
                diag_error(d, file, line, "http.tokens[%d]: a token named '%s' is already defined",
                           i, name);
                bad = 1;
            }
        if (!scopes && !bad) {
            diag_error(d, file, line,
                       "http.tokens[%d] (%s): no scopes; give at least one of events:write, "
                       "campaigns:run, read, admin",
                       i, name);
            bad = 1;
        }
        if (bad)
            continue;
        h->tokens = xrealloc(h->tokens, (h->ntokens + 1) * sizeof *h->tokens);
        conf_token *tok = &h->tokens[h->ntokens++];
        tok->name = xstrdup(name);
        tok->secret = xstrdup(secret);
        tok->scopes = scopes;
    }
}

static char **string_list(const config_setting_t *m, const char *file, int i, diag *d)
{
    int n = config_setting_length(m);
    char **out = xcalloc((size_t)n + 1, sizeof *out);
    for (int k = 0; k < n; k++) {
        const char *v = config_setting_get_string_elem(m, k);
        if (!v) {
            diag_error(d, file, (int)config_setting_source_line(m),
                       "http.feedback[%d].%s must be a list of strings", i, config_setting_name(m));
            break;
        }
        out[k] = xstrdup(v);
    }
    return out;
}

static void load_feedback(conf_http *h, const config_setting_t *l, diag *d)
{
    static const char *const builtin[] = {"ses", "postmark", "dsn", NULL};
    static const char *const keys[] = {"name", "type", "address", "reason",    "message_id",
                                       "key",  "hard", "soft",    "complaint", NULL};
    const char *file = config_setting_source_file(l);
    if (!config_setting_is_list(l)) {
        diag_error(d, file, (int)config_setting_source_line(l),
                   "http.feedback must be a list ( { name = \"myesp\"; type = \"event\"; "
                   "address = \"email\"; hard = [ \"bounce\" ]; } )");
        return;
    }
    for (int i = 0; i < config_setting_length(l); i++) {
        config_setting_t *t = config_setting_get_elem(l, (unsigned)i);
        int line = (int)config_setting_source_line(t);
        if (!config_setting_is_group(t)) {
            diag_error(d, file, line, "http.feedback[%d] must be a group { name; type; ... }", i);
            continue;
        }
        conf_feedback f = {0};
        int bad = 0;
        for (int k = 0; k < config_setting_length(t); k++) {
            config_setting_t *m = config_setting_get_elem(t, (unsigned)k);
            const char *key = config_setting_name(m);
            int mline = (int)config_setting_source_line(m);
            int known = 0;
            for (size_t j = 0; keys[j]; j++)
                known |= !strcmp(keys[j], key);
            if (!known) {
                const char *near = suggest_nearest(key, keys, 3);
                diag_error(d, file, mline,
                           "http.feedback[%d]: unknown key '%s'%s%s%s; known keys: name, type, "
                           "address, reason, message_id, key, hard, soft, complaint",
                           i, key, near ? " (did you mean '" : "", near ? near : "",
                           near ? "'?)" : "");
                bad = 1;
            } else if (!strcmp(key, "hard") || !strcmp(key, "soft") || !strcmp(key, "complaint")) {
                if (!config_setting_is_array(m) && !config_setting_is_list(m)) {
                    diag_error(d, file, mline, "http.feedback[%d].%s must be a list of strings", i,
                               key);
                    bad = 1;
                    continue;
                }
                char ***slot = !strcmp(key, "hard")   ? &f.hard
                               : !strcmp(key, "soft") ? &f.soft
                                                      : &f.complaint;
                *slot = string_list(m, file, i, d);
            } else if (config_setting_type(m) != CONFIG_TYPE_STRING) {
                diag_error(d, file, mline, "http.feedback[%d].%s must be a string", i, key);
                bad = 1;
            } else {
                char *v = xstrdup(config_setting_get_string(m));
                char **slot = !strcmp(key, "name")      ? &f.name
                              : !strcmp(key, "type")    ? &f.type
                              : !strcmp(key, "address") ? &f.address
                              : !strcmp(key, "reason")  ? &f.reason
                              : !strcmp(key, "key")     ? &f.key
                                                        : &f.message_id;
                free(*slot);
                *slot = v;
            }
        }
        if (!f.name || !*f.name || !http_feedback_name_ok(f.name)) {
            diag_error(d, file, line,
                       "http.feedback[%d]: 'name' must be letters, digits, '-' or '_' (it is the "
                       "path: POST /v1/feedback/NAME)",
                       i);
            bad = 1;
        }
        for (size_t j = 0; f.name && builtin[j]; j++)
            if (!strcmp(f.name, builtin[j])) {
                diag_error(d, file, line,
                           "http.feedback[%d]: '%s' is built in (ses, postmark, dsn); give "
                           "yours another name",
                           i, f.name);
                bad = 1;
            }
        for (size_t j = 0; f.name && j < h->nfeedback; j++)
            if (!strcmp(h->feedback[j].name, f.name)) {
                diag_error(d, file, line, "http.feedback[%d]: '%s' is already defined", i, f.name);
                bad = 1;
            }
        if (!f.type || !f.address) {
            diag_error(d, file, line,
                       "http.feedback[%d]: 'type' and 'address' (paths into the provider's JSON, "
                       "e.g. \"event\", \"msg.recipient\") are required",
                       i);
            bad = 1;
        }
        if (!f.hard && !f.complaint && !f.soft) {
            diag_error(d, file, line,
                       "http.feedback[%d]: give the type values that mean a bounce or a "
                       "complaint: hard = [ \"bounce\" ]; soft = [ ... ]; complaint = [ ... ]",
                       i);
            bad = 1;
        }
        (void)bad; /* kept either way (freed with h): a bad one refuses the configuration */
        h->feedback = xrealloc(h->feedback, (h->nfeedback + 1) * sizeof *h->feedback);
        h->feedback[h->nfeedback++] = f;
    }
}

int http_feedback_name_ok(const char *s)
{
    if (!*s || strlen(s) > 64)
        return 0;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              *s == '-' || *s == '_'))
            return 0;
    return 1;
}

const conf_feedback *conf_http_feedback(const conf_http *h, const char *name)
{
    for (size_t i = 0; i < h->nfeedback; i++)
        if (!strcmp(h->feedback[i].name, name))
            return &h->feedback[i];
    return NULL;
}

static void strv_free(char **v)
{
    for (size_t i = 0; v && v[i]; i++)
        free(v[i]);
    free(v);
}

void conf_http_load(conf_http *h, const config_setting_t *g, const char *dir, diag *d)
{
    memset(h, 0, sizeof *h);
    if (!g)
        return;
    h->file = config_setting_source_file(g);
    h->line = (int)config_setting_source_line(g);
    if (!config_setting_is_group(g)) {
        diag_error(d, h->file, h->line,
                   "http must be a group { listen = \"127.0.0.1:8080\"; tokens = ( ... ); }");
        return;
    }
    h->on = 1;
    static const char *const ignore[] = {"tokens", "feedback", NULL};
    const baton_config_key *maps[] = {http_keys};
    keymap_values vals = {0};
    keymap_validate(g, "http", maps, 1, ignore, dir, &vals, d);
    const keymap_value *v = keymap_get(&vals, "listen");
    if (v->s) {
        h->listen = xstrdup(v->s);
        if (split_listen(v->s, &h->host, &h->port) != 0)
            diag_error(d, h->file, v->line,
                       "http.listen = \"%s\": expected address:port, e.g. \"127.0.0.1:8080\" or "
                       "\"[::1]:8080\"",
                       v->s);
    }
    v = keymap_get(&vals, "public_url");
    if (v->present && v->s) {
        if (strncmp(v->s, "https://", 8) && strncmp(v->s, "http://", 7))
            diag_error(d, h->file, v->line,
                       "http.public_url = \"%s\": expected an http:// or https:// URL", v->s);
        h->public_url = xstrdup(v->s);
        size_t n = strlen(h->public_url);
        while (n > 0 && h->public_url[n - 1] == '/')
            h->public_url[--n] = 0;
    }
    v = keymap_get(&vals, "link_secret");
    if (v->present && v->s) {
        if (strlen(v->s) < 16)
            diag_error(d, h->file, v->line,
                       "http.link_secret is shorter than 16 characters; use a long random one "
                       "(e.g. openssl rand -hex 32, kept in the environment: "
                       "\"${env:BATON_LINK_SECRET}\")");
        h->link_secret = xstrdup(v->s);
    }
    if (h->public_url && !h->link_secret)
        diag_error(d, h->file, keymap_get(&vals, "public_url")->line,
                   "http.public_url needs http.link_secret, which signs the links made on it "
                   "(link_secret = \"${env:BATON_LINK_SECRET}\")");
    v = keymap_get(&vals, "tls_cert");
    if (v->present)
        h->tls_cert = xstrdup(v->s);
    const keymap_value *k = keymap_get(&vals, "tls_key");
    if (k->present)
        h->tls_key = xstrdup(k->s);
    if (!h->tls_cert != !h->tls_key)
        diag_error(d, h->file, h->line,
                   "http: tls_cert and tls_key go together (set both for "
                   "HTTPS, neither for plain HTTP)");
    v = keymap_get(&vals, "web_root");
    if (v->present)
        h->web_root = xstrdup(v->s);
    h->threads = (int)keymap_get(&vals, "threads")->i;
    h->connections = (int)keymap_get(&vals, "connections")->i;
    h->connections_per_ip = (int)keymap_get(&vals, "connections_per_ip")->i;
    h->timeout_ms = keymap_get(&vals, "timeout")->i;
    if (h->timeout_ms < 1000) {
        diag_error(d, h->file, keymap_get(&vals, "timeout")->line,
                   "http.timeout must be at least 1s");
        h->timeout_ms = 1000;
    }
    h->header_timeout_ms = keymap_get(&vals, "header_timeout")->i;
    if (h->header_timeout_ms < 1000) {
        diag_error(d, h->file, keymap_get(&vals, "header_timeout")->line,
                   "http.header_timeout must be at least 1s");
        h->header_timeout_ms = 1000;
    }
    h->body_timeout_ms = keymap_get(&vals, "body_timeout")->i;
    if (h->body_timeout_ms < 1000) {
        diag_error(d, h->file, keymap_get(&vals, "body_timeout")->line,
                   "http.body_timeout must be at least 1s");
        h->body_timeout_ms = 1000;
    }
    h->max_body = keymap_get(&vals, "max_body")->i;
    h->max_events = keymap_get(&vals, "max_events")->i;
    keymap_values_free(&vals);
    const config_setting_t *t = config_setting_get_member(g, "tokens");
    if (t)
        load_tokens(h, t, d);
    t = config_setting_get_member(g, "feedback");
    if (t)
        load_feedback(h, t, d);
}

void conf_http_free(conf_http *h)
{
    for (size_t i = 0; i < h->ntokens; i++) {
        free(h->tokens[i].name);
        if (h->tokens[i].secret) /* secrets do not linger in freed memory */
            explicit_bzero(h->tokens[i].secret, strlen(h->tokens[i].secret));
        free(h->tokens[i].secret);
    }
    free(h->tokens);
    for (size_t i = 0; i < h->nfeedback; i++) {
        conf_feedback *f = &h->feedback[i];
        free(f->name);
        free(f->type);
        free(f->address);
        free(f->reason);
        free(f->message_id);
        free(f->key);
        strv_free(f->hard);
        strv_free(f->soft);
        strv_free(f->complaint);
    }
    free(h->feedback);
    free(h->listen);
    free(h->host);
    free(h->public_url);
    if (h->link_secret)
        explicit_bzero(h->link_secret, strlen(h->link_secret));
    free(h->link_secret);
    free(h->tls_cert);
    free(h->tls_key);
    free(h->web_root);
    memset(h, 0, sizeof *h);
}
