/* Minimal libmosquitto QoS 1 publisher for the journey benchmark:
 * publishes each line of stdin as one message, up to INFLIGHT
 * unacknowledged, optionally paced at RATE lines per second (0: as fast as
 * the broker acknowledges). With STAMP=1, "{ts}" in a line is replaced by
 * the wall-clock time in microseconds at publish. Prints "T0 <us>" (the
 * wall-clock time of the first publish, when paced: line i is due at
 * T0 + i / RATE) and then the rate counted on the broker's
 * acknowledgements.
 * usage: mqtt_pub_lines PORT TOPIC INFLIGHT RATE STAMP < lines */
#include <mosquitto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static long acked;
static void on_pub(struct mosquitto *m, void *u, int mid) { acked++; }

static double mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    if (argc < 6)
        return 2;
    int port = atoi(argv[1]);
    const char *topic = argv[2];
    int inflight = atoi(argv[3]);
    double rate = atof(argv[4]);
    int stamp = atoi(argv[5]);
    mosquitto_lib_init();
    struct mosquitto *m = mosquitto_new(NULL, true, NULL);
    mosquitto_int_option(m, MOSQ_OPT_SEND_MAXIMUM, inflight);
    mosquitto_max_inflight_messages_set(m, (unsigned)inflight);
    mosquitto_publish_callback_set(m, on_pub);
    if (mosquitto_connect(m, "127.0.0.1", port, 60) != MOSQ_ERR_SUCCESS)
        return 1;
    char *line = NULL, buf[4096];
    size_t cap = 0;
    long sent = 0;
    double t0 = mono();
    struct timespec w0;
    clock_gettime(CLOCK_REALTIME, &w0);
    printf("T0 %lld\n", (long long)w0.tv_sec * 1000000 + w0.tv_nsec / 1000);
    ssize_t len;
    while ((len = getline(&line, &cap, stdin)) > 0) {
        while (len > 0 && line[len - 1] == '\n')
            line[--len] = '\0';
        if (rate > 0) {
            double due = t0 + sent / rate;
            while (mono() < due)
                mosquitto_loop(m, 0, 64);
        }
        while (sent - acked >= inflight)
            mosquitto_loop(m, 10, 256);
        const char *payload = line;
        if (stamp) {
            char *at = strstr(line, "{ts}");
            if (at) {
                struct timespec ts;
                clock_gettime(CLOCK_REALTIME, &ts);
                long long us = (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
                snprintf(buf, sizeof buf, "%.*s%lld%s", (int)(at - line), line, us, at + 4);
                payload = buf;
            }
        }
        mosquitto_publish(m, NULL, topic, (int)strlen(payload), payload, 1, false);
        sent++;
        mosquitto_loop(m, 0, 64);
    }
    while (acked < sent)
        mosquitto_loop(m, 10, 256);
    double s = mono() - t0;
    printf("%.0f\n", sent / s);
    mosquitto_disconnect(m);
    mosquitto_destroy(m);
    free(line);
    return 0;
}
