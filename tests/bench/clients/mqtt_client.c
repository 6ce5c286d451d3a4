/* Minimal libmosquitto QoS 1 publisher: the broker's ceiling for the
 * benchmark. usage: mqtt_client PORT COUNT INFLIGHT; prints "<rate> <cpu>":
 * msg/s counted on the broker's acknowledgements, CPU microseconds a message. */
#include <mosquitto.h>
#include <stdio.h>
#include <sys/resource.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static long acked;
static void on_pub(struct mosquitto *m, void *u, int mid)
{
    acked++;
}

int main(int argc, char **argv)
{
    if (argc < 4)
        return 2;
    int port = atoi(argv[1]);
    long count = atol(argv[2]);
    int inflight = atoi(argv[3]);
    mosquitto_lib_init();
    struct mosquitto *m = mosquitto_new("ceiling", true, NULL);
    mosquitto_int_option(m, MOSQ_OPT_SEND_MAXIMUM, inflight);
    mosquitto_max_inflight_messages_set(m, (unsigned)inflight);
    mosquitto_publish_callback_set(m, on_pub);
    if (mosquitto_connect(m, "127.0.0.1", port, 60) != MOSQ_ERR_SUCCESS)
        return 1;
    const char *payload = "{\"title\":\"ceiling\",\"body\":\"hello\"}";
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    long sent = 0;
    while (acked < count) {
        while (sent < count && sent - acked < inflight) {
            mosquitto_publish(m, NULL, "push/bench", (int)strlen(payload), payload, 1, false);
            sent++;
        }
        mosquitto_loop(m, 10, 256);
    }
    clock_gettime(CLOCK_MONOTONIC, &b);
    double s = (b.tv_sec - a.tv_sec) + (b.tv_nsec - a.tv_nsec) / 1e9;
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double cpu = ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec +
                 ru.ru_stime.tv_usec / 1e6;
    printf("%.0f %.1f\n", count / s, cpu * 1e6 / (count));
    mosquitto_destroy(m);
    return 0;
}
