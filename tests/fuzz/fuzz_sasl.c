/*
 * fuzz_sasl.c - PLACEHOLDER libFuzzer target for the SASL decoder, so that
 * the fuzz wiring builds; the decoder's owner replaces it with the real one.
 *
 * Input: byte 0 is the mechanism name's length, then the name, then client
 * lines separated by LF (the first is the initial response).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sasl.h"
#include "strbuf.h"

int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct strbuf out;
	struct sasl *s;
	const uint8_t *nl;
	size_t mlen, i, n;
	int initial = 1;

	if (size < 1)
		return 0;
	mlen = data[0] % 32;
	if (mlen > size - 1)
		mlen = size - 1;
	s = sasl_new((const char *)data + 1, mlen);
	strbuf_init(&out, 0);
	for (i = 1 + mlen; i < size; i += n + 1) {
		nl = memchr(data + i, '\n', size - i);
		n = nl != NULL ? (size_t)(nl - (data + i)) : size - i;
		sasl_client(s, (const char *)data + i, n, initial, &out);
		initial = 0;
		for (n = 0; n < out.len; n++)
			if ((unsigned char)out.buf[n] < 0x20)
				abort();
		strbuf_reset(&out);
		n = nl != NULL ? (size_t)(nl - (data + i)) : size - i;
	}
	strbuf_free(&out);
	sasl_free(s);
	return 0;
}
