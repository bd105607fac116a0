/* mac.c - SipHash-2-4 under a per-process random key. */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "mac.h"

static uint64_t k0, k1;
static int keyed = 0;

int ppe_mac_init(void) {
  unsigned char key[16];
  size_t got = 0;
  if (keyed) return 0;
  while (got < sizeof(key)) {
    ssize_t r = getrandom(key + got, sizeof(key) - got, 0);
    if (r < 0) {
      if (errno == EINTR) continue;
      return -errno;
    }
    got += (size_t)r;
  }
  memcpy(&k0, key, 8);
  memcpy(&k1, key + 8, 8);
  keyed = 1;
  return 0;
}

void ppe_mac_key(unsigned char out[PPE_MAC_KEYLEN]) {
  memcpy(out, &k0, 8);
  memcpy(out + 8, &k1, 8);
}

void ppe_mac_set_key(const unsigned char in[PPE_MAC_KEYLEN]) {
  memcpy(&k0, in, 8);
  memcpy(&k1, in + 8, 8);
  keyed = 1;
}

#define ROTL(x, b) (((x) << (b)) | ((x) >> (64 - (b))))

#define SIPROUND \
  do { \
    v0 += v1; v1 = ROTL(v1, 13); v1 ^= v0; v0 = ROTL(v0, 32); \
    v2 += v3; v3 = ROTL(v3, 16); v3 ^= v2; \
    v0 += v3; v3 = ROTL(v3, 21); v3 ^= v0; \
    v2 += v1; v1 = ROTL(v1, 17); v1 ^= v2; v2 = ROTL(v2, 32); \
  } while (0)

static uint64_t load64(const unsigned char *p) {
  uint64_t v = 0;
  int i;
  for (i = 7; i >= 0; i--) v = (v << 8) | p[i];  /* little-endian */
  return v;
}

/* The tag of a || b: the block that straddles them is put together in
** 'm' and 'have' bytes counted, so neither part is copied. */
uint64_t ppe_mac2(const void *a, size_t alen, const void *b, size_t blen) {
  const unsigned char *part[2];
  size_t plen[2], have = 0, i, j;
  uint64_t v0 = k0 ^ 0x736f6d6570736575ULL;
  uint64_t v1 = k1 ^ 0x646f72616e646f6dULL;
  uint64_t v2 = k0 ^ 0x6c7967656e657261ULL;
  uint64_t v3 = k1 ^ 0x7465646279746573ULL;
  uint64_t m = 0;
  part[0] = a; plen[0] = alen;
  part[1] = b; plen[1] = blen;
  for (j = 0; j < 2; j++) {
    const unsigned char *p = part[j];
    size_t len = plen[j];
    for (i = 0; i < len && have != 0; i++) {
      m |= (uint64_t)p[i] << (8 * have);
      if (++have == 8) {
        v3 ^= m; SIPROUND; SIPROUND; v0 ^= m;
        m = 0;
        have = 0;
      }
    }
    for (; i + 8 <= len; i += 8) {
      uint64_t w = load64(p + i);
      v3 ^= w; SIPROUND; SIPROUND; v0 ^= w;
    }
    for (; i < len; i++) m |= (uint64_t)p[i] << (8 * have++);
  }
  m |= (uint64_t)(alen + blen) << 56;
  v3 ^= m; SIPROUND; SIPROUND; v0 ^= m;
  v2 ^= 0xff;
  SIPROUND; SIPROUND; SIPROUND; SIPROUND;
  return v0 ^ v1 ^ v2 ^ v3;
}

uint64_t ppe_mac(const void *data, size_t len) {
  return ppe_mac2(data, len, NULL, 0);
}
