/* journey/event — the event envelope (docs/events.md): one JSON
 * object {"id", "type", "profile", "time", "data"}, parsed and checked
 * once, on the thread that received it. */
#ifndef BATON_JOURNEY_EVENT_H
#define BATON_JOURNEY_EVENT_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

typedef struct jevent {
    char *id; /* the event's id, or "h:<hash of the bytes>" when absent */
    char *type;
    char *profile;
    int64_t time_ms; /* "time", or the receive time when absent */
    json_t *data;    /* the "data" object (owned), or NULL */
    char *raw;       /* the bytes as received (rawlen of them, NULs included),
                        then a NUL */
    size_t rawlen;
    /* where data's object is in raw when it reads as it stands (no
     * escape in it: jevent_text copies it); data_len 0: not known */
    size_t data_off, data_len;
} jevent;

/* Parse json (len bytes) received at now_ms into ev. Returns 0, or -1 with
 * a one-line reason ("no 'type'", "time: not an ISO 8601 timestamp")
 * and ev->raw still set so the dead-letter table keeps the bytes. */
int jevent_parse(const char *json, size_t len, int64_t now_ms, jevent *ev, char *reason,
                 size_t reasonlen);
/* The same for a source that parsed the bytes itself (the HTTP face,
 * once per event), with JSON_REJECT_DUPLICATES as jevent_parse does:
 * root is borrowed, json/len are its bytes (kept as ev->raw). */
int jevent_from_json(json_t *root, const char *json, size_t len, int64_t now_ms, jevent *ev,
                     char *reason, size_t reasonlen);
/* The object at the very start of json (len bytes, valid UTF-8: the
 * caller checked), read as jevent_parse reads a plain one: the value, in
 * *used the bytes it took, in *data_off and *data_len where its "data" value
 * is (len 0: none; for ev->data_off/data_len once jevent_from_json took
 * it); NULL when it is not that plain (an escape, a duplicate key, ...):
 * json_loadb reads it then, and gives the reason. For a source whose
 * body holds several events (the HTTP face). */
json_t *jevent_read_object(const char *json, size_t len, size_t *used, size_t *data_off,
                           size_t *data_len);
/* jevent_parse's reason for bytes jansson refused ("not JSON: ..."). */
void jevent_json_error(const json_error_t *je, char *reason, size_t reasonlen);
void jevent_free(jevent *ev);
/* The event as journeys keep it: {id, type, profile, time, data}
 * (new reference), and the same as JSON text (malloc'd): the envelope
 * compact, data as it came when its bytes are known (data_len), else as
 * json_dumps(JSON_COMPACT) writes it. */
json_t *jevent_json(const jevent *ev);
char *jevent_text(const jevent *ev);

/* Rebuild an event from the fields the inbox stores. */
int jevent_from_stored(const char *id, const char *type, const char *profile, int64_t time_ms,
                       const char *raw, size_t rawlen, jevent *ev);

/* A value of the event as expressions see it: "type", "id", "profile",
 * "time" read the envelope, anything else data.<name> (dotted names
 * descend into nested objects). NULL when absent. */
json_t *jevent_field(const jevent *ev, const char *name);

#endif
