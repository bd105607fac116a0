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

uint64_t ppe_mac(const void *data, size_t len) {
  const unsigned char *p = data;
  uint64_t v0 = k0 ^ 0x736f6d6570736575ULL;
  uint64_t v1 = k1 ^ 0x646f72616e646f6dULL;
  uint64_t v2 = k0 ^ 0x6c7967656e657261ULL;
  uint64_t v3 = k1 ^ 0x7465646279746573ULL;
  uint64_t m, b = (uint64_t)len << 56;
  size_t i, tail = len & 7;
  for (i = 0; i + 8 <= len; i += 8) {
    m = load64(p + i);
    v3 ^= m; SIPROUND; SIPROUND; v0 ^= m;
  }
  for (i = 0; i < tail; i++)
    b |= (uint64_t)p[len - tail + i] << (8 * i);
  v3 ^= b; SIPROUND; SIPROUND; v0 ^= b;
  v2 ^= 0xff;
  SIPROUND; SIPROUND; SIPROUND; SIPROUND;
  return v0 ^ v1 ^ v2 ^ v3;
}
