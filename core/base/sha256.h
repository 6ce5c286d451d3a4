/* sha256 — SHA-256 (FIPS 180-4) and HMAC-SHA256 (RFC 2104), for signed
 * links; no crypto library is linked, and these are small. */
#ifndef BATON_BASE_SHA256_H
#define BATON_BASE_SHA256_H

#include <stddef.h>
#include <stdint.h>

#define SHA256_LEN 32

typedef struct sha256_ctx {
    uint32_t h[8];
    uint64_t bytes;
    unsigned char block[64];
    size_t used;
} sha256_ctx;

void sha256_init(sha256_ctx *c);
void sha256_update(sha256_ctx *c, const void *data, size_t len);
void sha256_final(sha256_ctx *c, unsigned char out[SHA256_LEN]);
void sha256(const void *data, size_t len, unsigned char out[SHA256_LEN]);
void hmac_sha256(const void *key, size_t keylen, const void *msg, size_t msglen,
                 unsigned char out[SHA256_LEN]);
/* 1 when a[0..n) equals b[0..n), in time that depends on n only. */
int ct_equal(const void *a, const void *b, size_t n);

#endif
