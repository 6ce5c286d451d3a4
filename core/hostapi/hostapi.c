/* hostapi — the host table every plugin receives at init: the members the
 * plugin layer implements over its instances (config, counters, logging),
 * buffers and records, expressions and templates (hostapi/lang), events
 * into the journey inbox and the campaign's activity context
 * (campaign/act_host). It sits above every stage whose members it lists,
 * so it is assembled here and handed down to the loader once. */
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hostapi/hostapi.h"
#include "base/buf.h"
#include "base/log.h"
#include "base/mem.h"
#include "base/zone.h"
#include "base/record.h"
#include "campaign/act_host.h"
#include "delivery/dispatch.h"
#include "hostapi/lang.h"
#include "plugin/plugin_host.h"

/* ------------------------------------------------------------------ */
/* The host table                                                      */
/* ------------------------------------------------------------------ */

BATON_PRINTF(3, 4)
static void h_log(baton_instance *inst, baton_log_level level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_vmsg(level, inst ? inst->who : "plugin", fmt, ap);
    va_end(ap);
}

BATON_PRINTF(2, 3) static void h_set_error(baton_instance *inst, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(inst->error, sizeof inst->error, fmt, ap);
    va_end(ap);
}

static const char *h_instance_name(baton_instance *inst)
{
    return inst->name;
}

static const keymap_value *val(baton_instance *inst, const char *key)
{
    return inst ? keymap_get(&inst->values, key) : NULL;
}

static const char *h_config_string(baton_instance *inst, const char *key)
{
    const keymap_value *v = val(inst, key);
    return v ? v->s : NULL;
}
static int64_t h_config_int(baton_instance *inst, const char *key)
{
    const keymap_value *v = val(inst, key);
    return v ? v->i : 0;
}
static double h_config_float(baton_instance *inst, const char *key)
{
    const keymap_value *v = val(inst, key);
    return v ? v->f : 0;
}
static int h_config_bool(baton_instance *inst, const char *key)
{
    const keymap_value *v = val(inst, key);
    return v ? (int)v->i : 0;
}
static int64_t h_config_duration_ms(baton_instance *inst, const char *key)
{
    const keymap_value *v = val(inst, key);
    return v && v->key->type == BATON_CFG_DURATION ? v->i : 0;
}
static size_t h_config_list_count(baton_instance *inst, const char *key)
{
    const keymap_value *v = val(inst, key);
    return v ? v->nlist : 0;
}
static const char *h_config_list_item(baton_instance *inst, const char *key, size_t i)
{
    const keymap_value *v = val(inst, key);
    return v && i < v->nlist ? v->list[i] : NULL;
}

static void h_json_string(baton_buf *out, const char *s, size_t len)
{
    buf_add_json_string(out, s, len);
}
static void h_base64(baton_buf *out, const void *data, size_t len)
{
    buf_add_base64(out, data, len);
}
static int h_config_enum(baton_instance *inst, const char *key)
{
    const keymap_value *v = val(inst, key);
    if (!v || v->key->type != BATON_CFG_ENUM || !v->s || !v->key->choices)
        return -1;
    for (int i = 0; v->key->choices[i]; i++)
        if (strcmp(v->key->choices[i], v->s) == 0)
            return i;
    return -1;
}

static baton_counter *h_counter(baton_instance *inst, const char *name)
{
    instance_counter *found = NULL;
    pthread_mutex_lock(&inst->counters_lock);
    for (size_t i = 0; i < inst->ncounters && !found; i++)
        if (strcmp(inst->counters[i]->name, name) == 0)
            found = inst->counters[i];
    if (!found && inst->ncounters < sizeof inst->counters / sizeof inst->counters[0]) {
        found = xcalloc(1, sizeof *found);
        found->name = xstrdup(name);
        inst->counters[inst->ncounters++] = found;
    }
    pthread_mutex_unlock(&inst->counters_lock);
    if (!found)
        log_msg(BATON_LOG_WARN, inst->who, "counter '%s' not created: 64 counters at most", name);
    return (baton_counter *)found;
}

static void h_counter_add(baton_counter *c, uint64_t n)
{
    if (c)
        atomic_fetch_add(&((instance_counter *)c)->value, n);
}

static void h_buf_append(baton_buf *b, const void *data, size_t len)
{
    buf_add(b, data, len);
}
BATON_PRINTF(2, 3) static void h_buf_printf(baton_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    buf_vaddf(b, fmt, ap);
    va_end(ap);
}
static const char *h_buf_data(const baton_buf *b, size_t *len)
{
    if (len)
        *len = b->len;
    return b->data ? b->data : "";
}

static baton_buf *h_buf_new(void)
{
    return xcalloc(1, sizeof(buf));
}
static void h_buf_reset(baton_buf *b)
{
    buf_reset(b);
}
static void h_buf_free(baton_buf *b)
{
    if (b) {
        buf_free(b);
        free(b);
    }
}

static int h_record_get(const baton_record *r, const char *name, baton_value *out)
{
    return record_get(r, name, out);
}
static size_t h_record_count(const baton_record *r)
{
    return r ? r->n : 0;
}
static const char *h_record_name(const baton_record *r, size_t i)
{
    return r && i < r->n ? r->v[i].name : NULL;
}
static baton_record *h_record_new(void)
{
    return record_new();
}
static void h_record_set(baton_record *r, const char *name, const baton_value *v)
{
    record_set(r, name, v);
}
static void h_record_free(baton_record *r)
{
    record_free(r);
}

static const baton_host host_api = {
    .size = sizeof(baton_host),
    .abi_major = BATON_ABI_MAJOR,
    .abi_minor = BATON_ABI_MINOR,
    .log = h_log,
    .set_error = h_set_error,
    .instance_name = h_instance_name,
    .config_string = h_config_string,
    .config_int = h_config_int,
    .config_float = h_config_float,
    .config_bool = h_config_bool,
    .config_duration_ms = h_config_duration_ms,
    .config_list_count = h_config_list_count,
    .config_list_item = h_config_list_item,
    .counter = h_counter,
    .counter_add = h_counter_add,
    .buf_append = h_buf_append,
    .buf_printf = h_buf_printf,
    .buf_data = h_buf_data,
    .buf_new = h_buf_new,
    .buf_reset = h_buf_reset,
    .buf_free = h_buf_free,
    .record_get = h_record_get,
    .record_count = h_record_count,
    .record_name = h_record_name,
    .record_new = h_record_new,
    .record_set = h_record_set,
    .record_free = h_record_free,
    .expr_compile = host_expr_compile,
    .expr_eval = host_expr_eval,
    .expr_free = host_expr_free,
    .template_compile = host_template_compile,
    .template_render = host_template_render,
    .template_free = host_template_free,
    .event_submit = plugin_event_submit,
    .event_flush = plugin_event_flush,
    .act_id = ah_id,
    .act_setting_count = ah_setting_count,
    .act_setting_string = ah_setting_string,
    .act_setting_number = ah_setting_number,
    .act_setting_bool = ah_setting_bool,
    .act_error = ah_error,
    .act_input_count = ah_input_count,
    .act_input_dimension = ah_input_dimension,
    .act_input_table = ah_input_table,
    .act_input_column_count = ah_input_column_count,
    .act_input_column = ah_input_column,
    .act_output = ah_output,
    .act_output_column = ah_output_column,
    .act_output_table = ah_output_table,
    .act_audience_table = ah_audience_table,
    .act_audience_saved = ah_audience_saved,
    .act_is_plan = ah_is_plan,
    .act_note = ah_note,
    .act_entity = ah_entity,
    .act_field_type = ah_field_type,
    .act_link = ah_link,
    .act_expr_sql = ah_expr_sql,
    .act_param = ah_param,
    .act_sql = ah_sql,
    .act_dialect = ah_dialect,
    .act_setting_path = ah_setting_path,
    .json_string = h_json_string,
    .base64 = h_base64,
    .config_enum = h_config_enum,
    .template_compile_as = host_template_compile_as,
    .zone_local = zone_local,
    .act_expr_sql_joins = ah_expr_sql_joins,
    .deliver_wire = dispatch_deliver_wire,
    .deliver_done = dispatch_deliver_done,
};

const baton_host *plugin_host_api(void)
{
    return &host_api;
}

void hostapi_install(void)
{
    plugin_host_use(&host_api);
}
