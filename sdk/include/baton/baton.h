/*
 * baton/baton.h — the baton plugin SDK. This header is the whole surface a
 * plugin sees: a plugin includes it and the C library, links against nothing
 * of baton's, and reaches the host only through the baton_host table it is
 * handed at init.
 *
 * ABI rules
 *   - BATON_ABI_MAJOR changes only when an existing member changes meaning
 *     or place. The host refuses a plugin of another major.
 *   - BATON_ABI_MINOR grows when members are appended. The host refuses a
 *     plugin whose minor is newer than its own, and loads older ones: every
 *     boundary struct starts with its size, so the host never reads past
 *     what the plugin was compiled with, and a plugin checks
 *     host->abi_minor before calling a member added after 1.0.
 *   - Members are only ever appended (or take a reserved slot); each one
 *     says the version that added it. So are enum values: a host reads a
 *     value it does not know as the safest one it knows (baton_status).
 *
 * Ownership: unless a member says otherwise, pointers passed to a plugin are
 * borrowed for the duration of the call, and pointers a plugin returns in a
 * descriptor must stay valid until the plugin is unloaded (static data).
 *
 * Threads: the lifecycle of one instance (init/start/stop/destroy) runs
 * on one thread at a time, in order; different instances of a plugin may
 * run theirs at the same time on different threads (baton serve keeps
 * its scheduler's instances beside its own), so a plugin guards any state
 * it shares between instances. Kind callbacks say which thread calls them
 * and whether they may block.
 */
#ifndef BATON_BATON_H
#define BATON_BATON_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#ifdef __cplusplus
extern "C" {
#endif

#define BATON_ABI_MAJOR 1
#define BATON_ABI_MINOR 5

/* The one symbol a plugin exports: a function returning its descriptor. */
#define BATON_ENTRY_SYMBOL "baton_plugin_entry"

#if defined(__GNUC__) || defined(__clang__)
#define BATON_EXPORT __attribute__((visibility("default")))
#define BATON_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define BATON_EXPORT
#define BATON_PRINTF(f, a)
#endif

/* ------------------------------------------------------------------ */
/* Values                                                              */
/* ------------------------------------------------------------------ */

typedef enum baton_type {
    BATON_T_NULL = 0,
    BATON_T_BOOL,
    BATON_T_INT,
    BATON_T_FLOAT,
    BATON_T_STRING,
    BATON_T_DATE,      /* days since 1970-01-01 */
    BATON_T_TIMESTAMP, /* seconds since 1970-01-01T00:00:00Z */
    BATON_T_DURATION   /* seconds */
} baton_type;

/* A typed value. Strings are UTF-8, not necessarily NUL-terminated: use
 * len. A string value is borrowed from whoever produced it. */
typedef struct baton_value {
    baton_type type;
    union {
        int b;
        int64_t i;
        double f;
        struct {
            const char *ptr;
            size_t len;
        } s;
        int64_t date;
        int64_t ts;
        int64_t dur;
    } v;
} baton_value;

/* A record: named values (a row of an audience, an event, a profile, an
 * action's response). Opaque; read and built through the host table. */
typedef struct baton_record baton_record;

/* A growable byte buffer owned by the host; plugins append through the
 * host table. */
typedef struct baton_buf baton_buf;

/* One configured use of a plugin: the channel "email", the source "crm".
 * Opaque; every host call that concerns an instance takes it. */
typedef struct baton_instance baton_instance;

/* 1.2 — where a template's text goes (template_compile_as): how each
 * {{ }} value in it is escaped. */
typedef enum baton_escape {
    BATON_ESCAPE_TEXT = 0,     /* as is (template_compile, html = 0) */
    BATON_ESCAPE_HTML = 1,     /* & < > " ' as entities (html = 1) */
    BATON_ESCAPE_HEADER = 2,   /* a header's text: CR, LF, control bytes dropped */
    BATON_ESCAPE_URL_LIST = 3, /* a header of <URL>s (List-Unsubscribe): inside
                                  <..> percent-encoded, outside '<' '>' ',' and
                                  CR LF dropped */
    BATON_ESCAPE_URL = 4,      /* a URL: percent-encoded (RFC 3986 unreserved kept) */
    BATON_ESCAPE_JSON = 5,     /* a JSON text: inside a string JSON-escaped; where
                                  a value goes, a JSON value (strings quoted,
                                  NULL as null) */
    BATON_ESCAPE_FORM = 6,     /* application/x-www-form-urlencoded */
    BATON_ESCAPE_TOPIC = 7,    /* an MQTT topic: '/', '+', '#', '%' percent-encoded */
} baton_escape;

/* Compiled expression and template, owned by the host. */
typedef struct baton_expr baton_expr;
typedef struct baton_template baton_template;

/* A metrics counter, owned by the host, valid until the plugin unloads. */
typedef struct baton_counter baton_counter;

/* ------------------------------------------------------------------ */
/* Declarative configuration                                           */
/* ------------------------------------------------------------------ */

typedef enum baton_cfg_type {
    BATON_CFG_STRING = 1,
    BATON_CFG_INT,
    BATON_CFG_FLOAT, /* accepts an int too */
    BATON_CFG_BOOL,
    BATON_CFG_DURATION, /* "90s" "15m" "12h" "7d" "2w" (and "250ms") */
    BATON_CFG_ENUM,     /* a string among `choices` */
    BATON_CFG_LIST,     /* an array of strings */
    BATON_CFG_PATH,     /* a string; relative paths are resolved against the
                           directory of the file that holds the setting */
    BATON_CFG_TEMPLATE  /* a string holding {{ }} placeholders */
} baton_cfg_type;

/* One key of a plugin's configuration. The host validates the plugin's
 * group against these before init: unknown keys, wrong types, missing
 * required keys, out-of-range numbers and unknown enum values are all
 * reported with file:line, and `baton plugins --describe` prints them.
 * A map ends with an entry whose name is NULL. Maps are checked at load:
 * an enum needs choices, a default must parse as its type, a name appears
 * once and does not redeclare a key baton reads itself with another type.
 * This struct is frozen for every 1.x (arrays of it cannot carry their
 * size): new key attributes would come as new types. */
typedef struct baton_config_key {
    const char *name;
    baton_cfg_type type;
    const char *default_value; /* as it would be written in the file, or NULL */
    int required;
    int has_range; /* INT, FLOAT, DURATION (in seconds) */
    double min;
    double max;
    const char *const *choices; /* ENUM: NULL-terminated */
    const char *help;
} baton_config_key;

/* ------------------------------------------------------------------ */
/* Status of a delivery or a call                                      */
/* ------------------------------------------------------------------ */

typedef enum baton_status {
    BATON_OK = 0,    /* done; provider_id says the provider's id, if any */
    BATON_RETRY = 1, /* transient: the core retries with backoff */
    BATON_ERROR = 2, /* permanent: recorded with its reason, not retried */
    /* 1.5 — a channel's message may have been delivered and the provider
     * never said: recorded "uncertain" with its reason and not sent again
     * (see baton_delivery). A host older than 1.5 refuses a plugin built
     * for 1.5, so a channel answers it without checking host->abi_minor. */
    BATON_UNCERTAIN = 3
    /* Any other value (a plugin's bug) is read as BATON_RETRY: tried again
     * within the channel's retry budget, the channel's reason kept. */
} baton_status;

typedef enum baton_log_level {
    BATON_LOG_ERROR = 0,
    BATON_LOG_WARN,
    BATON_LOG_INFO,
    BATON_LOG_DEBUG
} baton_log_level;

/* ------------------------------------------------------------------ */
/* Kinds                                                               */
/* ------------------------------------------------------------------ */

typedef enum baton_kind {
    BATON_KIND_ACTIVITY = 1,
    BATON_KIND_SOURCE,
    BATON_KIND_CHANNEL,
    BATON_KIND_ACTION,
    BATON_KIND_EVENT
} baton_kind;

/* --- channel ------------------------------------------------------- */

/* One message to deliver. Every member is owned by the host and valid
 * until deliver() returns. */
typedef struct baton_message {
    uint32_t size;          /* sizeof(baton_message) as the host built it */
    const char *key;        /* idempotency key: unique per message, stable
                               across retries and resumed runs */
    const char *recipient;  /* the address: email, phone number, device... */
    const char *profile_id; /* the profile the message reaches */
    size_t nparts;          /* rendered content: subject, text, html, ... */
    const char *const *part_names;
    const char *const *part_values;
    const baton_record *row; /* the row the message was rendered from */
    /* 1.0 — when the message was accepted (seconds since the epoch, UTC),
     * stable across retries: format() uses it for dates (an email's Date
     * header) so that it stays pure. */
    int64_t time;
    /* 1.0 — 1 on the first deliver() of this message, 2 on the first
     * retry... */
    uint32_t attempt;
    void *reserved[4];
} baton_message;

/* Per message, filled by deliver(). The host hands it in as RETRY "the
 * channel gave no answer", so a message deliver() forgets is retried,
 * never lost. Which status: OK once the provider has accepted the message
 * (SMTP 250 after DATA, HTTP 2xx, an MQTT PUBACK); RETRY when trying again
 * later may work and the message has not been delivered (connection
 * refused, a timeout or a lost connection before the message was all
 * sent, SMTP 4xx, HTTP 408/429/5xx) — the core retries with exponential
 * backoff and jitter up to the channel's `retries` and `retry_for`, and
 * pauses the whole channel when most of a batch asks to; ERROR when it
 * never will (SMTP 5xx, HTTP 4xx, an invalid number or address, format()
 * failing) — recorded with its reason, not retried; UNCERTAIN (1.5) when
 * the whole message went out and no answer came (a timeout or a lost
 * connection after SMTP's final dot: RFC 5321 §6.1 says it may have been
 * delivered) — recorded "uncertain" with its reason and not sent again,
 * as a message a crash caught on the wire, unless the channel sets
 * `resend_uncertain = true` or BATON_CHANNEL_IDEMPOTENT: then it is
 * retried as RETRY is (and, retries spent, left uncertain). */
typedef struct baton_delivery {
    baton_status status;
    char provider_id[128]; /* the provider's message id, when OK */
    char reason[256];      /* the provider's words, when RETRY, ERROR or
                              UNCERTAIN ("RCPT TO: 550 5.1.1 ...", "HTTP
                              429: ...", "DATA: no reply within 10 m ...") */
    uint32_t segments;     /* SMS segments, 0 where it does not apply */
    uint32_t reserved[7];
} baton_delivery;

typedef struct baton_channel_ops {
    uint32_t size;
    /* Content parts the channel renders, NULL-terminated ("subject",
     * "text", "html"); a send activity or node sets them. */
    const char *const *parts;
    /* Pure: the exact bytes (or request) the channel would send for msg,
     * appended to out — the whole email, the HTTP request line, headers
     * and body, the MQTT topic and payload. No I/O; the same msg gives the
     * same bytes (dates come from msg->time). Dry runs show it and tests
     * compare it byte for byte; deliver() sends what it describes. Any
     * thread; may not block. Returns 0, or -1 with err filled (the message
     * cannot be sent: deliver() answers ERROR for it). */
    int (*format)(void *state, const baton_message *msg, baton_buf *out, char *err, size_t errlen);
    /* Per delivery worker: open what a worker keeps between batches (an
     * SMTP session, a curl multi handle). Called on that worker's thread;
     * may block. May be NULL. Returns the worker's connection or NULL. */
    void *(*worker_open)(void *state);
    void (*worker_close)(void *state, void *conn);
    /* Deliver n messages (at most the channel's `batch`), filling out[i]
     * for each. Called on a channel worker thread, never the engine's; may
     * block, within the channel's timeouts. conn is what worker_open
     * returned (NULL when it failed or is not set: answer RETRY, or
     * connect here). The core has already applied rate, caps, consent and
     * idempotency; a channel only sends and answers. */
    void (*deliver)(void *state, void *conn, const baton_message *const *msgs, size_t n,
                    baton_delivery *out);
    /* (1.4: a channel reports each message as it goes on the wire and as
     * its outcome is known, through host->deliver_wire and
     * host->deliver_done: see baton_host.) */
    /* 1.0 — a campaign send is complete. The idempotency key of a
     * campaign message is "<campaign>/<run>/<activity>/<row key>" ('/' and
     * '%' in the row key written %2F and %25), and its batch is the key up
     * to its last '/'. batch_end says every message of `batch` was
     * delivered, `count` in all (those of an earlier, interrupted attempt
     * included). A channel that writes files finishes them here. Engine thread, after the last
     * deliver() of the batch returned; may block. May be NULL. Returns 0, or -1 with err. */
    int (*batch_end)(void *state, const char *batch, uint64_t count, char *err, size_t errlen);
    /* 1.2 — BATON_CHANNEL_* flags (0 for a plugin built before 1.2). */
    uintptr_t flags;
    void *reserved[6];
} baton_channel_ops;

/* A channel that needs no recipient (one that writes rows to a file):
 * baton check does not ask its sends for an address. Every other channel
 * sends to the address its `address` key names (or a row's `recipient`
 * column), and a send without one is a check error. */
#define BATON_CHANNEL_NO_RECIPIENT ((uintptr_t)1 << 0)
/* 1.4 — the channel drops a repeat of a key itself (a journal of the keys
 * it wrote, a provider that deduplicates): a message a crash left in
 * deliver() (or answered BATON_UNCERTAIN) is sent again, as with
 * `resend_uncertain = true`, instead of becoming uncertain. */
#define BATON_CHANNEL_IDEMPOTENT ((uintptr_t)1 << 1)

/* --- action -------------------------------------------------------- */

typedef struct baton_action_call {
    uint32_t size;
    const char *key; /* idempotency key of this call */
    const char *profile_id;
    const baton_record *context; /* profile, event and earlier results */
    void *reserved[4];
} baton_action_call;

typedef struct baton_action_ops {
    uint32_t size;
    /* Perform the call. Called on an action worker thread; may block up to
     * the action's timeout. Write the response body (JSON, if any) to
     * response and a reason to reason on failure. OK, RETRY or ERROR:
     * any other value (BATON_UNCERTAIN included) is read as RETRY. */
    baton_status (*invoke)(void *state, const baton_action_call *call, baton_buf *response,
                           char *reason, size_t reasonlen);
    void *reserved[8];
} baton_action_ops;

/* --- source -------------------------------------------------------- */

/* Called once per result row; return nonzero to stop. */
typedef int (*baton_row_fn)(void *ud, size_t ncols, const char *const *names,
                            const baton_value *values);

/* One statement of baton_source_ops.exec_batch: what exec() takes. */
typedef struct baton_sql_stmt {
    const char *sql;
    const baton_value *params;
    size_t nparams;
    baton_row_fn fn;
    void *ud;
} baton_sql_stmt;

typedef struct baton_source_ops {
    uint32_t size;
    /* "sqlite", "postgresql": the SQL dialect of exec(); NULL for a lookup
     * source. */
    const char *dialect;
    /* Run one SQL statement with bound parameters. Called on the engine's
     * thread or a campaign worker, one at a time per instance; may block.
     * Returns 0, or -1 with err filled. */
    int (*exec)(void *state, const char *sql, const baton_value *params, size_t nparams,
                baton_row_fn fn, void *ud, char *err, size_t errlen);
    /* Lookup sources: fill out with the fields found for the context (a
     * profile and an event). Any thread; may block up to the source's
     * timeout. Returns 0 found, 1 not found, -1 failure (err filled). */
    int (*lookup)(void *state, const baton_record *context, baton_record *out, char *err,
                  size_t errlen);
    /* 1.0 — the columns of a table, for checking the schema against the
     * database: fn is called once per column with two string values,
     * "name" and "type" (the declared type, may be empty). Returns 0, 1
     * when the table does not exist, -1 on failure (err filled). Same
     * threads as exec. May be NULL (lookup sources). */
    int (*columns)(void *state, const char *table, baton_row_fn fn, void *ud, char *err,
                   size_t errlen);
    /* 1.4 — several reads (SELECTs) in one round trip to the server, each
     * as exec() would run it, their rows to their own fn in order (a
     * journey step's profile and linked rows). Returns 0 when every one
     * ran, -1 with err (the first failure's message). Same threads as
     * exec. May be NULL: the host calls exec() for each. */
    int (*exec_batch)(void *state, const baton_sql_stmt *stmts, size_t n, char *err, size_t errlen);
    void *reserved[6];
} baton_source_ops;

/* --- event --------------------------------------------------------- */

/* Event sources push events to the host with host->event_submit from their
 * own threads between start() and stop(). */
/* How a probe tells what it found: one finding per call, text without a
 * trailing newline. BATON_LOG_WARN: a limit that can lose events (or a far
 * end that cannot be reached); BATON_LOG_INFO: what could not be seen. */
typedef void (*baton_probe_note_fn)(void *ud, baton_log_level level, const char *text);

typedef struct baton_event_ops {
    uint32_t size;
    /* 1.5 — baton check: learn what can be learned about the far end (an
     * MQTT broker's session limits) without consuming anything and
     * without disturbing a running baton serve (another client id, no
     * session left behind), each finding to note(ud, ...). Called after
     * init, without start, on the engine's thread; may block, for a short
     * connect timeout of its own. An unreachable far end is a finding
     * (BATON_LOG_WARN), not a failure: check must work offline. May be
     * NULL; the host reads it only when size says it is there. */
    void (*probe)(void *state, baton_probe_note_fn note, void *ud);
    void *reserved[7];
} baton_event_ops;

/* --- activity ------------------------------------------------------ */

/* One activity of one campaign as the host sees it while check() or run()
 * is called: its settings (the activity's group in the campaign file), its
 * inputs (work tables in the campaign's data source, each of a dimension:
 * the entity one row stands for) and its outputs. Opaque; used through the
 * host table's act_* members, and valid only during that call.
 *
 * A work table has the column `_key` (the key of the dimension's entity,
 * unique per table) and the extra columns the activities before it added
 * (enrich); an activity that passes rows through keeps those columns. */
typedef struct baton_activity_ctx baton_activity_ctx;

/* One activity type a plugin provides ("build_audience", "combine"). */
typedef struct baton_activity_type {
    uint32_t size;
    const char *name;
    const char *help;
    /* Settings in the campaign file besides id, type, input and inputs.
     * The host rejects unknown keys (listing these) and checks the types
     * of scalar keys; BATON_CFG_LIST accepts a list of groups too, which
     * check() validates itself. */
    const baton_config_key *keys;
    /* Validate settings (act_error for each problem, all of them) and
     * declare every output with act_output (and its extra columns), from
     * the inputs' dimensions and columns. No data access. Engine thread.
     * Returns 0, or -1 when it reported errors. */
    int (*check)(void *state, baton_activity_ctx *ctx);
    /* Compute the outputs declared by check(): create each
     * act_output_table() with SQL run through act_sql(). Set work only:
     * no row-by-row loops. Engine thread; may block. Returns 0, or -1
     * after act_error. The host counts the rows of each output. */
    int (*run)(void *state, baton_activity_ctx *ctx);
    void *reserved[8];
} baton_activity_type;

/* ------------------------------------------------------------------ */
/* The host table                                                      */
/* ------------------------------------------------------------------ */

typedef struct baton_host {
    uint32_t size;
    uint16_t abi_major;
    uint16_t abi_minor;

    /* 1.0 — logging, prefixed with the instance name. Any thread. */
    void (*log)(baton_instance *inst, baton_log_level level, const char *fmt, ...)
        BATON_PRINTF(3, 4);
    /* 1.0 — the message init() or start() failed with; the host prints it
     * with the instance's file:line. */
    void (*set_error)(baton_instance *inst, const char *fmt, ...) BATON_PRINTF(2, 3);
    /* 1.0 — the instance's name ("email", "crm"). */
    const char *(*instance_name)(baton_instance *inst);

    /* 1.0 — validated configuration, defaults applied. Strings are owned by
     * the host and valid until destroy. Read each key with the getter of
     * its type (config_float also reads an INT key; config_string reads
     * STRING, ENUM, PATH (resolved), TEMPLATE and the text of a DURATION);
     * another getter, or a key the plugin did not declare, returns NULL /
     * 0. Any thread. */
    const char *(*config_string)(baton_instance *inst, const char *key);
    int64_t (*config_int)(baton_instance *inst, const char *key);
    double (*config_float)(baton_instance *inst, const char *key);
    int (*config_bool)(baton_instance *inst, const char *key);
    int64_t (*config_duration_ms)(baton_instance *inst, const char *key);
    size_t (*config_list_count)(baton_instance *inst, const char *key);
    const char *(*config_list_item)(baton_instance *inst, const char *key, size_t i);

    /* 1.0 — metrics. counter() returns the instance's counter of that name,
     * creating it (64 per instance at most; past that NULL, which
     * counter_add ignores). Both from any thread; call counter() once, in
     * init, and keep the pointer. */
    baton_counter *(*counter)(baton_instance *inst, const char *name);
    void (*counter_add)(baton_counter *c, uint64_t n);

    /* 1.0 — buffers. The host hands buffers to callbacks (owned by the
     * host); a plugin that needs its own makes one with buf_new and frees
     * it with buf_free. buf_data is NUL-terminated. Any thread; a buffer
     * is used by one thread at a time. */
    void (*buf_append)(baton_buf *b, const void *data, size_t len);
    void (*buf_printf)(baton_buf *b, const char *fmt, ...) BATON_PRINTF(2, 3);
    const char *(*buf_data)(const baton_buf *b, size_t *len);
    baton_buf *(*buf_new)(void);
    void (*buf_reset)(baton_buf *b);
    void (*buf_free)(baton_buf *b);

    /* 1.0 — records. A record is a flat list of named values; names may
     * hold dots ("profile.city", "event.total") and are matched exactly.
     * record_get returns 0 and fills out (borrowed from the record) when
     * the field exists, -1 otherwise. record_new/record_set build a record
     * the plugin owns until record_free; set copies the value (which may
     * come from the same record). */
    int (*record_get)(const baton_record *r, const char *name, baton_value *out);
    size_t (*record_count)(const baton_record *r);
    const char *(*record_name)(const baton_record *r, size_t i);
    baton_record *(*record_new)(void);
    void (*record_set)(baton_record *r, const char *name, const baton_value *v);
    void (*record_free)(baton_record *r);

    /* 1.0 — expressions and templates (docs/expressions.md and
     * docs/templates.md).
     * expr_compile checks text against `scope` and fills err ("1:9:
     * unknown field 'tierr' in profiles (did you mean 'tier'?)") on
     * failure, returning NULL. scope:
     *   NULL        every name is an untyped field of the record given to
     *               expr_eval, looked up by its full dotted path at run
     *               time ("tier", "profile.city", "event.total");
     *   "journey"   the journey scope: profile.* typed by the schema's
     *               profiles entity, event.* untyped (event.time a
     *               timestamp), any other prefix untyped;
     *   an entity   of the profiles source's schema ("profiles",
     *               "orders"): bare fields and many-to-one links of that
     *               entity, typed; the record carries them by path
     *               ("tier", "store.city").
     * Aggregates over one-to-many links need rows a record cannot carry:
     * through this table they fail at eval. now() is the host's clock.
     * expr_eval returns 0 with *out filled (a string result is copied into
     * scratch, which is reset first, and valid until scratch changes; with
     * scratch NULL a string result fails), or -1. NULL follows SQL: a
     * condition holds only when *out is a true bool. template_compile
     * takes html = 1 to HTML-escape {{ }} values; names are resolved as
     * for a NULL scope ({{#each}} is not available); template_render
     * appends to out and returns 0, or -1 leaving out as it was. Compiled
     * objects are immutable and owned
     * by the plugin until *_free; compile, eval and render may run on any
     * thread and do not block. */
    baton_expr *(*expr_compile)(baton_instance *inst, const char *text, const char *scope,
                                char *err, size_t errlen);
    int (*expr_eval)(const baton_expr *e, const baton_record *r, baton_value *out,
                     baton_buf *scratch);
    void (*expr_free)(baton_expr *e);
    baton_template *(*template_compile)(baton_instance *inst, const char *text, int html, char *err,
                                        size_t errlen);
    int (*template_render)(const baton_template *t, const baton_record *r, baton_buf *out);
    void (*template_free)(baton_template *t);

    /* 1.0 — events: hand one raw event (JSON) to the host. The host calls
     * ack(ack_ctx) once the event is durable (or dead-lettered); only then
     * may the source acknowledge it upstream. Returns 0 queued, 1 queue
     * full (retry later: backpressure), -1 refused (no ack will come).
     * Source thread; does not block. ack runs on a host thread, usually
     * after event_submit has returned: events submitted together are
     * committed together (group commit), so a source should submit all it
     * has received before waiting for their acks. json is copied. */
    int (*event_submit)(baton_instance *inst, const char *json, size_t len,
                        void (*ack)(void *ack_ctx), void *ack_ctx);

    /* 1.0 — campaign activities (BATON_KIND_ACTIVITY). Every act_* member
     * takes the ctx handed to check() or run() and is called on that
     * call's thread (the engine's); strings it returns are owned by the
     * host and valid until that call returns.
     *
     * Settings are read by path into the activity's group: "filter",
     * "by.1", "branches.0.percent". act_setting_count: the elements of a
     * list, array or group, 0 for a scalar, -1 when absent.
     * act_setting_string: NULL when absent or not a string.
     * act_setting_number / act_setting_bool: 0 and *out, or -1 when
     * absent or of another type. act_error: one error reported as
     * file:line of that setting (the activity's line when path is NULL or
     * absent), prefixed with the activity's id; every error is kept. */
    const char *(*act_id)(baton_activity_ctx *ctx);
    int (*act_setting_count)(baton_activity_ctx *ctx, const char *path);
    const char *(*act_setting_string)(baton_activity_ctx *ctx, const char *path);
    int (*act_setting_number)(baton_activity_ctx *ctx, const char *path, double *out);
    int (*act_setting_bool)(baton_activity_ctx *ctx, const char *path, int *out);
    void (*act_error)(baton_activity_ctx *ctx, const char *path, const char *fmt, ...)
        BATON_PRINTF(3, 4);

    /* 1.0 — inputs, in the order of `input` / `inputs`. act_input_table
     * is the work table to read in run(), NULL in check(). Columns are
     * the extra columns beyond _key. */
    size_t (*act_input_count)(baton_activity_ctx *ctx);
    const char *(*act_input_dimension)(baton_activity_ctx *ctx, size_t i);
    const char *(*act_input_table)(baton_activity_ctx *ctx, size_t i);
    size_t (*act_input_column_count)(baton_activity_ctx *ctx, size_t i);
    const char *(*act_input_column)(baton_activity_ctx *ctx, size_t i, size_t col,
                                    baton_type *type);

    /* 1.0 — outputs. In check(): act_output declares one (name NULL for
     * the single output, else a named one: "a" makes the transition
     * "split_id.a") of a dimension, with the columns of input `like`
     * (-1: none); act_output_column adds an extra column to it. Returns 0,
     * -1 on a duplicate name. In run(): act_output_table is the table to
     * create for that output (CREATE TABLE <it> AS SELECT _key, ...). */
    int (*act_output)(baton_activity_ctx *ctx, const char *name, const char *dimension, int like);
    int (*act_output_column)(baton_activity_ctx *ctx, const char *name, const char *column,
                             baton_type type);
    const char *(*act_output_table)(baton_activity_ctx *ctx, const char *name);
    /* A named audience's table (save_audience, read_audience), and in
     * *dimension the dimension it was saved with (NULL when it was never
     * saved). NULL when name is not a valid audience name (letters,
     * digits, '_' and '-'). act_audience_saved records that the table now
     * holds the audience, of that dimension. */
    const char *(*act_audience_table)(baton_activity_ctx *ctx, const char *name,
                                      const char **dimension);
    int (*act_audience_saved)(baton_activity_ctx *ctx, const char *name, const char *dimension);
    /* 1 in `campaign plan` and in dry or proof runs (compute, change
     * nothing that outlives them: save no audience), 0 in a real run. */
    int (*act_is_plan)(baton_activity_ctx *ctx);
    /* A line of report that plan and run print under the activity
     * (reconcile's unmatched rows); at most a bounded number are kept. */
    void (*act_note)(baton_activity_ctx *ctx, const char *fmt, ...) BATON_PRINTF(2, 3);

    /* 1.0 — the schema. act_entity: the table and key of an entity
     * (-1 unknown); the key is NULL for an entity whose key is composite
     * (a link table's `key = [ ... ]`: a hop between entities, never an
     * output's dimension, which act_output refuses). act_field_type: a field's type, -1 when the
     * entity has no such field. act_link: how rows of `from` reach rows of `to` over one declared
     * link, in either direction: from.from_col = to.to_col; returns 1 when many rows of `to` match
     * one of `from` (the reverse side), 0 when at most one, -1 when no link joins them.
     * act_entity_name: the i-th entity, NULL past the last. */
    int (*act_entity)(baton_activity_ctx *ctx, const char *dimension, const char **table,
                      const char **key);
    int (*act_field_type)(baton_activity_ctx *ctx, const char *dimension, const char *field);
    int (*act_link)(baton_activity_ctx *ctx, const char *from, const char *to,
                    const char **from_col, const char **to_col);

    /* 1.0 — SQL on the campaign's data source. act_expr_sql compiles an
     * expression (docs/expressions.md; `text`, or the setting at
     * `path` when text is NULL) in the scope of `dimension`, whose row is
     * aliased `alias`, and whose work-table columns (of input `input`,
     * -1: none) are read from alias `w`; it appends the SQL to out and
     * binds its literals as parameters of the ctx. want is the type the
     * expression must have (BATON_T_BOOL for a filter; BATON_T_NULL: any)
     * and *type (may be NULL) receives the type it has. Errors are
     * reported at the setting with line:col. act_param binds one more
     * value and appends its placeholder. act_sql runs one statement with
     * every parameter bound so far, then forgets them; fn may be NULL.
     * In check() it runs too (the source is open; no work table exists
     * yet): read what a check needs, such as a saved audience's columns.
     * act_dialect: "sqlite", "postgresql". Each returns 0, or -1 after
     * reporting the error. */
    int (*act_expr_sql)(baton_activity_ctx *ctx, const char *path, const char *text,
                        const char *dimension, const char *alias, int input, baton_type want,
                        baton_type *type, baton_buf *out);
    void (*act_param)(baton_activity_ctx *ctx, const baton_value *v, baton_buf *out);
    int (*act_sql)(baton_activity_ctx *ctx, const char *sql, baton_row_fn fn, void *ud);
    const char *(*act_dialect)(baton_activity_ctx *ctx);
    /* The file a setting names, resolved against the campaign file's
     * directory (reconcile's CSV). NULL when the setting is absent. */
    const char *(*act_setting_path)(baton_activity_ctx *ctx, const char *path);

    /* 1.1 — events: everything submitted so far is all the source has
     * for now (an MQTT source after one read of its socket): the host
     * commits the group at once instead of waiting for more. Optional: a
     * source that never calls it has its groups committed once it pauses
     * for 100 us. Source thread; does not block. Check host->abi_minor >= 1
     * before calling. */
    void (*event_flush)(baton_instance *inst);

    /* 1.2 — the host's encoders, so that no plugin carries a copy that
     * drifts from the others. Any thread; they do not block. */
    /* s[0..len) appended to out as a JSON string literal, quotes
     * included, escaped exactly as jansson escapes (\" \\ \b \f \n \r
     * \t, \u00XX for other control bytes, UTF-8 left as is). */
    void (*json_string)(baton_buf *out, const char *s, size_t len);
    /* data[0..len) appended to out in standard base64 (RFC 4648, padded,
     * no line breaks: a caller that folds lines cuts the input in
     * multiples of 3 bytes). */
    void (*base64)(baton_buf *out, const void *data, size_t len);
    /* An ENUM key's value as its index in the key's `choices` (the host
     * validated it), or -1 when the key is absent or not an enum: plugins
     * switch on it instead of comparing strings at each use. */
    int (*config_enum)(baton_instance *inst, const char *key);
    /* 1.2 — template_compile for text that goes into something that
     * parses it: each {{ }} value is escaped for `escape` (a
     * baton_escape) so it stays one value there; {{{ }}} is never escaped
     * and the host warns where it is used in such a template. */
    baton_template *(*template_compile_as)(baton_instance *inst, const char *text, int escape,
                                           char *err, size_t errlen);

    /* 1.3 — time zones: the wall clock of the IANA zone `zone`
     * ("Europe/Paris", from the system's tz database) at the UTC instant
     * t (seconds since the epoch), as seconds since the epoch as if local
     * were UTC. 0 with *local set, -1 when the zone is unknown. The one
     * reading of local time, so a source's SQL function (baton_tz_local)
     * answers as the expression evaluator does. Any thread; a zone's
     * first use reads its file, later ones do not block. */
    int (*zone_local)(const char *zone, int64_t t, int64_t *local);

    /* 1.4 — act_expr_sql whose aggregates over the row's own links are
     * read through LEFT JOINs of the campaign's grouped tables, each
     * appended once to `joins`, which the caller puts right after the
     * FROM item aliased `alias` (one buffer for every expression of a
     * statement). A join is one pass where a subquery is a lookup per
     * row (PostgreSQL never turns one into the other). */
    int (*act_expr_sql_joins)(baton_activity_ctx *ctx, const char *path, const char *text,
                              const char *dimension, const char *alias, int input, baton_type want,
                              baton_type *type, baton_buf *out, baton_buf *joins);

    /* 1.4 — channels: each message's progress inside deliver(), so that
     * a process killed in the middle of a batch (kill -9, a crash)
     * leaves "uncertain" only the messages actually on the wire, not the
     * whole batch. msgs and msg are the pointers deliver() was handed
     * (never copies); call them on the thread of deliver() or on one of
     * the channel's own threads, while that deliver() runs.
     * deliver_wire: these n messages go on the wire now — call it before
     * the first byte of each leaves (before MAIL FROM, before an HTTP
     * request is written, before a row is appended), for as many at a
     * time as go out together (one per SMTP session, up to `inflight`
     * HTTP requests). It returns once the mark is durable (one commit,
     * grouped with the other workers': well under a millisecond on a
     * quiet disk). After a crash a message marked so without an outcome
     * is uncertain; a message of the same deliver() call never marked is
     * sent again normally. So once a channel calls it in a deliver()
     * call, it calls it for every message it sends in that call; a
     * channel that never calls it keeps the 1.3 guarantee (the whole
     * batch uncertain). Blocks for that commit only.
     * deliver_done: msg's outcome is final (out: its out[i] as deliver()
     * would leave it, filled): recorded in the delivery log's next group
     * commit (a few milliseconds), without waiting for the rest of the
     * batch, so that a crash later in the batch does not make it
     * uncertain. out[i] must not change afterwards; a second call for
     * the same message is ignored. Optional: an outcome not reported so
     * is recorded when deliver() returns. Does not block (a short lock).
     * Check host->abi_minor >= 4 before calling. */
    void (*deliver_wire)(const baton_message *const *msgs, size_t n);
    void (*deliver_done)(const baton_message *msg, const baton_delivery *out);

    void *reserved[15];
} baton_host;

/* ------------------------------------------------------------------ */
/* The descriptor                                                      */
/* ------------------------------------------------------------------ */

typedef struct baton_plugin {
    uint32_t size;      /* sizeof(baton_plugin) as the plugin compiled it */
    uint16_t abi_major; /* BATON_ABI_MAJOR the plugin was built against */
    uint16_t abi_minor;
    const char *name; /* matches the file name: channel_email */
    const char *version;
    const char *description;
    baton_kind kind;
    const baton_config_key *config; /* per-instance keys, or NULL */

    /* Lifecycle, per configured instance, one call at a time (see Threads
     * at the top of this file).
     * init: validate and allocate, no threads or connections; *state is
     *   handed to every later call. Returns 0, or -1 after
     *   host->set_error() (then destroy is not called). host stays valid
     *   until destroy returns.
     * start: open connections, start threads. 0 or -1 (set_error); after
     *   a failed start, stop is not called: release what start opened
     *   before returning -1. destroy still is.
     * stop: finish or hand back in-flight work, join every thread the
     *   plugin started, cancel timers. After stop no plugin code runs on
     *   any thread. Must not fail.
     * destroy: free state. */
    int (*init)(baton_instance *inst, const baton_host *host, void **state);
    int (*start)(void *state);
    void (*stop)(void *state);
    void (*destroy)(void *state);

    /* Kind operations: baton_channel_ops, baton_action_ops,
     * baton_source_ops or baton_event_ops, matching kind. */
    const void *ops;
    /* BATON_KIND_ACTIVITY: the activity types, ending with a NULL name. */
    const baton_activity_type *activities;

    void *reserved[8];
} baton_plugin;

typedef const baton_plugin *(*baton_plugin_entry_fn)(void);

/* A channel's progress through the host (baton_host 1.4 deliver_wire and
 * deliver_done), doing nothing on an older host: a channel calls these
 * unconditionally. */
static inline void baton_deliver_wire(const baton_host *h, const baton_message *const *msgs,
                                      size_t n)
{
    if (h->abi_minor >= 4 && h->deliver_wire && n)
        h->deliver_wire(msgs, n);
}
static inline void baton_deliver_done(const baton_host *h, const baton_message *msg,
                                      const baton_delivery *out)
{
    if (h->abi_minor >= 4 && h->deliver_done)
        h->deliver_done(msg, out);
}

/* Define the plugin's descriptor and its entry symbol. Every slot not
 * named is zero:
 *
 *   BATON_PLUGIN(.name = "action_jsonl", .version = "1.0.0",
 *                .kind = BATON_KIND_ACTION, .config = keys,
 *                .init = my_init, .destroy = my_destroy, .ops = &my_ops);
 */
#define BATON_PLUGIN(...)                                                                          \
    BATON_EXPORT const baton_plugin *baton_plugin_entry(void);                                     \
    BATON_EXPORT const baton_plugin *baton_plugin_entry(void)                                      \
    {                                                                                              \
        static const baton_plugin desc_ = {.size = sizeof(baton_plugin),                           \
                                           .abi_major = BATON_ABI_MAJOR,                           \
                                           .abi_minor = BATON_ABI_MINOR,                           \
                                           __VA_ARGS__};                                           \
        return &desc_;                                                                             \
    }

/* Read a content part of a message by name; NULL when absent. */
static inline const char *baton_message_part(const baton_message *m, const char *name)
{
    for (size_t i = 0; i < m->nparts; i++) {
        const char *a = m->part_names[i], *b = name;
        while (*a && *a == *b) {
            a++;
            b++;
        }
        if (*a == *b)
            return m->part_values[i];
    }
    return NULL;
}

/* The Message-ID of a message of key, without its angle brackets, into
 * out: "baton.KEY@domain", the key's bytes other than letters, digits,
 * '-', '_', '/' and '+' written =XX (RFC 5322 dot-atom text). A retry
 * carries the same id, and a bounce or complaint that quotes it (a DSN's
 * returned headers, In-Reply-To, References; an ESP webhook's message
 * id) names its delivery (baton_message_id_key). Its length, or 0 when
 * it does not fit in outlen. */
static inline size_t baton_message_id(const char *key, const char *domain, char *out, size_t outlen)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;
    const char *pre = "baton.";
    for (; *pre && o < outlen; pre++)
        out[o++] = *pre;
    for (const unsigned char *k = (const unsigned char *)key; *k; k++) {
        int plain = (*k >= 'a' && *k <= 'z') || (*k >= 'A' && *k <= 'Z') ||
                    (*k >= '0' && *k <= '9') || *k == '-' || *k == '_' || *k == '/' || *k == '+';
        if (o + (plain ? 1 : 3) >= outlen)
            return 0;
        if (plain) {
            out[o++] = (char)*k;
        } else {
            out[o++] = '=';
            out[o++] = hex[*k >> 4];
            out[o++] = hex[*k & 15];
        }
    }
    if (o + 1 >= outlen)
        return 0;
    out[o++] = '@';
    for (; *domain; domain++) {
        if (o + 1 >= outlen)
            return 0;
        out[o++] = *domain;
    }
    out[o] = '\0';
    return o;
}

/* The key a baton_message_id names (msgid with or without its angle
 * brackets, blanks around it) into key: 1, or 0 when msgid is not one
 * or the key does not fit in keylen. */
static inline int baton_message_id_key(const char *msgid, char *key, size_t keylen)
{
    while (*msgid == ' ' || *msgid == '\t' || *msgid == '<')
        msgid++;
    const char *pre = "baton.";
    for (; *pre; pre++, msgid++)
        if (*msgid != *pre)
            return 0;
    size_t o = 0;
    for (; *msgid && *msgid != '@'; msgid++) {
        unsigned char c = (unsigned char)*msgid;
        if (c == '=') {
            int v = 0;
            for (int i = 1; i <= 2; i++) {
                unsigned char x = (unsigned char)msgid[i];
                int d = x >= '0' && x <= '9'   ? x - '0'
                        : x >= 'A' && x <= 'F' ? x - 'A' + 10
                        : x >= 'a' && x <= 'f' ? x - 'a' + 10
                                               : -1;
                if (d < 0)
                    return 0;
                v = v * 16 + d;
            }
            c = (unsigned char)v;
            msgid += 2;
        } else if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                     c == '-' || c == '_' || c == '/' || c == '+')) {
            return 0;
        }
        if (!c || o + 1 >= keylen)
            return 0;
        key[o++] = (char)c;
    }
    if (*msgid != '@' || !o)
        return 0;
    key[o] = '\0';
    return 1;
}

/* An allocation's result, checked as the host checks its own: out of
 * memory ends the process at once with the place it happened, so no
 * plugin goes on with a NULL it did not expect (a half-built message, a
 * lost event). BATON_CHECKED(strdup(s)), BATON_CHECKED(calloc(n, size)). */
#define BATON_CHECKED(p) baton_checked_((p), __FILE__, __LINE__)
static inline void *baton_checked_(void *p, const char *file, int line)
{
    if (!p) {
        fprintf(stderr, "baton: %s:%d: out of memory\n", file, line);
        abort();
    }
    return p;
}

#ifdef __cplusplus
}
#endif
#endif
