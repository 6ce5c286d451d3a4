/* Minimal libcurl multi client: the HTTP sink's ceiling for the benchmark.
 * usage: http_client PORT COUNT INFLIGHT; prints "<rate> <cpu>": requests/s
 * and CPU microseconds a request. */
#include <curl/curl.h>
#include <stdio.h>
#include <sys/resource.h>
#include <stdlib.h>
#include <time.h>

static size_t sink(char *p, size_t s, size_t n, void *u)
{
    return s * n;
}

int main(int argc, char **argv)
{
    if (argc < 4)
        return 2;
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%s/sms", argv[1]);
    long count = atol(argv[2]);
    int inflight = atoi(argv[3]);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    CURLM *m = curl_multi_init();
    curl_multi_setopt(m, CURLMOPT_MAX_HOST_CONNECTIONS, (long)inflight);
    CURL **e = calloc((size_t)inflight, sizeof *e);
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
    h = curl_slist_append(h, "Expect:");
    const char *body = "{\"to\":\"+33600000000\",\"text\":\"ceiling\"}";
    long started = 0, done = 0;
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (int i = 0; i < inflight; i++) {
        e[i] = curl_easy_init();
        curl_easy_setopt(e[i], CURLOPT_URL, url);
        curl_easy_setopt(e[i], CURLOPT_HTTPHEADER, h);
        curl_easy_setopt(e[i], CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(e[i], CURLOPT_WRITEFUNCTION, sink);
        if (started < count) {
            curl_multi_add_handle(m, e[i]);
            started++;
        }
    }
    while (done < count) {
        int still, left;
        curl_multi_perform(m, &still);
        CURLMsg *msg;
        while ((msg = curl_multi_info_read(m, &left))) {
            if (msg->msg != CURLMSG_DONE)
                continue;
            CURL *x = msg->easy_handle;
            curl_multi_remove_handle(m, x);
            done++;
            if (started < count) {
                curl_multi_add_handle(m, x);
                started++;
            }
        }
        if (done < count)
            curl_multi_poll(m, NULL, 0, 100, NULL);
    }
    clock_gettime(CLOCK_MONOTONIC, &b);
    double s = (b.tv_sec - a.tv_sec) + (b.tv_nsec - a.tv_nsec) / 1e9;
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double cpu = ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec +
                 ru.ru_stime.tv_usec / 1e6;
    printf("%.0f %.1f\n", count / s, cpu * 1e6 / (count));
    return 0;
}
