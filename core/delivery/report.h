/* delivery/report — the delivery log as JSON, for `baton profile`, the
 * HTTP API (GET /v1/deliveries, /v1/channels) and the web console. */
#ifndef BATON_DELIVERY_REPORT_H
#define BATON_DELIVERY_REPORT_H

#include <jansson.h>
#include <stdint.h>

#include "store/store.h"

typedef struct delivery_filter {
    const char *profile, *channel, *status; /* NULL: any */
    int64_t since;                          /* created at or after (UTC s); 0: any */
    int64_t before;                         /* the cursor: rowid below this; 0: from the newest */
    int limit;                              /* 1..1000 */
} delivery_filter;

/* {"deliveries": [...], "next_cursor": "..." | null}, newest first:
 * {"key", "source" ("journey", "campaign"), "channel", "recipient",
 * "profile", "status", "provider_id"?, "reason"?, "attempts",
 * "created_at", "updated_at"}. No delivery log yet: an empty list. */
json_t *delivery_list_json(store *st, const delivery_filter *f);

/* Every delivery of one profile, oldest first (as in delivery_list_json). */
json_t *delivery_profile_json(store *st, const char *profile);

/* The latest n failures of a channel: [{"key", "at", "reason"}]. */
json_t *delivery_channel_errors(store *st, const char *channel, int n);

#endif
