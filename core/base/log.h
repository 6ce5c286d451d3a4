/* log — the one logger: text or JSON lines on stderr, with a level. */
#ifndef BATON_LOG_H
#define BATON_LOG_H

#include <baton/baton.h>

void log_configure(baton_log_level level, int json);
int log_level_parse(const char *s, baton_log_level *out);
int log_enabled(baton_log_level level);
/* who: the component or plugin instance ("core", "channel email"). */
void log_msg(baton_log_level level, const char *who, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void log_vmsg(baton_log_level level, const char *who, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));

#define log_error(...) log_msg(BATON_LOG_ERROR, "core", __VA_ARGS__)
#define log_warn(...) log_msg(BATON_LOG_WARN, "core", __VA_ARGS__)
#define log_info(...) log_msg(BATON_LOG_INFO, "core", __VA_ARGS__)
#define log_debug(...) log_msg(BATON_LOG_DEBUG, "core", __VA_ARGS__)

#endif
