/*-------------------------------------------------------------------------
 *
 * pgp_fuzz.c
 *	  libFuzzer harness for src/pgp.c, the OpenPGP packet encoder and
 *	  decoder (built and run by fuzz/run.sh: make fuzz).
 *
 * The first input byte picks what the rest is:
 *	 even: an OpenPGP message, decrypted with the seed corpus's passphrase;
 *		   a message that decrypts must have passed the MDC check, so it
 *		   must also decrypt to the same data a second time;
 *	 odd:  plaintext, encrypted with options taken from the second byte,
 *		   then decrypted again: the round trip must give it back, and the
 *		   size must be the one pgp_encrypted_size() promised; its armor
 *		   must fit pgp_armor_size().
 * Any mismatch aborts, which libFuzzer reports as a crash.  No state is
 * kept between inputs.
 *
 *-------------------------------------------------------------------------
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pgp.h"

#define PASSPHRASE "pg_courier fuzz corpus passphrase"

int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
check(int ok, const char *what)
{
	if (!ok)
	{
		fprintf(stderr, "pgp_fuzz: %s\n", what);
		abort();
	}
}

static void
fuzz_decrypt(const uint8_t *msg, size_t len)
{
	uint8_t    *out = malloc(len + 1);
	uint8_t    *again = malloc(len + 1);
	size_t		outlen;
	size_t		againlen;
	char		type;
	PgpResult	r;

	r = pgp_decrypt((const uint8_t *) PASSPHRASE, strlen(PASSPHRASE), msg, len,
					out, len, &outlen, &type);
	check(r == PGP_OK || r == PGP_CORRUPT || r == PGP_UNSUPPORTED, "unexpected decrypt result");
	if (r == PGP_OK)
	{
		check(outlen <= len, "plaintext longer than the message");
		r = pgp_decrypt((const uint8_t *) PASSPHRASE, strlen(PASSPHRASE), msg, len,
						again, len, &againlen, &type);
		check(r == PGP_OK && againlen == outlen && memcmp(out, again, outlen) == 0,
			  "decrypt is not deterministic");
	}
	free(out);
	free(again);
}

static void
fuzz_roundtrip(uint8_t flags, const uint8_t *data, size_t len)
{
	static const int ciphers[] = {PGP_CIPHER_AES128, PGP_CIPHER_AES192, PGP_CIPHER_AES256};
	static const int modes[] = {0, 1, 3, 1};
	static const int digests[] = {PGP_DIGEST_SHA1, PGP_DIGEST_SHA256};
	PgpOptions	opts;
	size_t		cap;
	uint8_t    *msg;
	uint8_t    *out;
	char	   *armor;
	size_t		msglen;
	size_t		outlen;
	char		type;
	PgpResult	r;

	pgp_options_machine(&opts);
	opts.cipher_algo = ciphers[(flags & 3) % 3];
	opts.s2k_mode = modes[(flags >> 2) & 3];
	opts.s2k_digest_algo = digests[(flags >> 4) & 1];
	opts.use_sess_key = (flags >> 5) & 1;
	opts.literal_type = (flags >> 6) & 1 ? PGP_LITERAL_TEXT : PGP_LITERAL_BINARY;
	opts.s2k_count = 0;			/* the cheapest count: 1024 bytes */

	cap = pgp_encrypted_size(&opts, len);
	msg = malloc(cap);
	r = pgp_encrypt(&opts, (const uint8_t *) PASSPHRASE, strlen(PASSPHRASE), data, len,
					msg, cap, &msglen);
	check(r == PGP_OK, "encrypt failed");
	check(msglen == cap, "encrypted size differs from pgp_encrypted_size()");
	out = malloc(msglen);
	r = pgp_decrypt((const uint8_t *) PASSPHRASE, strlen(PASSPHRASE), msg, msglen,
					out, msglen, &outlen, &type);
	check(r == PGP_OK, "round trip does not decrypt");
	check(outlen == len && memcmp(out, data, len) == 0, "round trip changed the data");
	check(type == opts.literal_type, "round trip changed the literal type");
	armor = malloc(pgp_armor_size(msglen));
	check(pgp_armor(msg, msglen, armor) == pgp_armor_size(msglen), "armor size differs");
	free(armor);
	free(msg);
	free(out);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 2)
		return 0;
	if ((data[0] & 1) == 0)
		fuzz_decrypt(data + 1, size - 1);
	else
		fuzz_roundtrip(data[1], data + 2, size - 2);
	return 0;
}
