#include "base/log.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "base/buf.h"
#include "base/timefmt.h"

static baton_log_level g_level = BATON_LOG_INFO;
static int g_json;
static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static const char *const names[] = {"error", "warn", "info", "debug"};

void log_configure(baton_log_level level, int json)
{
    g_level = level;
    g_json = json;
}

int log_level_parse(const char *s, baton_log_level *out)
{
    for (int i = 0; i < 4; i++)
        if (strcmp(s, names[i]) == 0) {
            *out = (baton_log_level)i;
            return 0;
        }
    return -1;
}

int log_enabled(baton_log_level level)
{
    return level <= g_level;
}

void log_vmsg(baton_log_level level, const char *who, const char *fmt, va_list ap)
{
    if (level > g_level)
        return;
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    char ts[21];
    timestamp_format(now.tv_sec, ts);
    buf line;
    buf_init(&line);
    buf msg;
    buf_init(&msg);
    buf_vaddf(&msg, fmt, ap);
    if (g_json) {
        buf_addf(&line, "{\"time\":\"%s\",\"level\":\"%s\",\"who\":", ts, names[level]);
        buf_add_json_string(&line, who, strlen(who));
        buf_adds(&line, ",\"msg\":");
        buf_add_json_string(&line, msg.data, msg.len);
        buf_adds(&line, "}\n");
    } else {
        buf_addf(&line, "%s %-5s [%s] %s\n", ts, names[level], who, msg.data);
    }
    pthread_mutex_lock(&g_lock);
    fputs(line.data, stderr);
    pthread_mutex_unlock(&g_lock);
    buf_free(&msg);
    buf_free(&line);
}

void log_msg(baton_log_level level, const char *who, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_vmsg(level, who, fmt, ap);
    va_end(ap);
}
