/* mac.h - a keyed tag (SipHash-2-4) that proves bytecode came from this
** process tree, so a decoder never loads bytecode it did not make. */
#ifndef PPE_MAC_H
#define PPE_MAC_H

#include <stddef.h>
#include <stdint.h>

/* Draws the process key once; forked children inherit it. 0 or -errno. */
int ppe_mac_init(void);
uint64_t ppe_mac(const void *data, size_t len);
/* The key, for a far worker that tags and checks bytecode as this process
** tree does (hello.h); and setting it there. */
#define PPE_MAC_KEYLEN 16
void ppe_mac_key(unsigned char out[PPE_MAC_KEYLEN]);
void ppe_mac_set_key(const unsigned char in[PPE_MAC_KEYLEN]);
/* The tag of the bytes of a followed by those of b. */
uint64_t ppe_mac2(const void *a, size_t alen, const void *b, size_t blen);

#endif
